import { sql } from 'drizzle-orm';
import { beforeAll, beforeEach } from 'vitest';
import { connectedMailbox } from './gmail.js';
import { useAppWithOwner } from './test-app.js';

/** The owner's mailbox the sync tests read, and two people the CRM knows (BOB is a sandbox mailbox too). */
export const ALICE = 'alice@acme.test';
export const BOB = 'bob@contoso.test';
export const CAROL = 'carol@contoso.test';

/**
 * The Gmail sync tests' world (gmail-sync, gmail-sync-triggers): the real app on a socket,
 * the real Google client, the Gmail sandbox over HTTP; an owner whose CRM has contacts for
 * BOB, CAROL and three more addresses, and ALICE connected with reading on (not synced yet).
 * A file's tests share it and run in order; sandbox faults are cleared before each test.
 */
export function useSyncApp(options: Parameters<typeof useAppWithOwner>[0] = {}) {
  const base = useAppWithOwner(options);
  const ctx = Object.assign(base, { alice: {} as { id: string; email: string }, contactIds: {} as Record<string, string> });
  beforeAll(async () => {
    for (const email of [BOB, CAROL, 'gone@contoso.test', 'full@contoso.test', 'later@contoso.test']) {
      ctx.contactIds[email] = (await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email } })).body.id;
    }
    ctx.app.sandbox.control.createMailbox({ email: BOB });
    ctx.alice = await connectedMailbox(ctx.app, ctx.owner.token, ALICE, { sync: true });
  });
  beforeEach(() => {
    ctx.app.sandbox.control.clearFaults();
  });

  const sync = (mailboxId: string) => ctx.app.services.sync.syncMailbox(mailboxId);

  async function query<T = Record<string, unknown>>(statement: ReturnType<typeof sql>): Promise<T[]> {
    return ((await ctx.app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
  }

  const syncedRows = (mailboxId: string) =>
    query<{ id: string; subject: string | null; direction: string; status: string; gmail_message_id: string; from_address: string; to_addresses: string[] }>(
      sql`select * from messages where mailbox_id = ${mailboxId}::uuid and synced order by at, gmail_message_id`,
    );

  async function mailboxView(id: string) {
    const res = await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token });
    return res.body.mailboxes.find((m: { id: string }) => m.id === id);
  }

  return Object.assign(ctx, { sync, query, syncedRows, mailboxView });
}
