import { eq, sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { mailboxes } from '../../src/db/schema.js';
import type { ActiveFault } from '../../src/sandbox/faults.js';
import { ALICE, BOB, type useSyncApp } from './gmail-sync.js';

/** What the resync tests share (gmail/sync-pass.ts): ALICE's reads, her checkpoint, mail into her mailbox, a try that fails part way. */
export function resyncFixtures(ctx: ReturnType<typeof useSyncApp>) {
  const reads = () => ctx.app.sandbox.control.calls({ mailbox: ALICE, endpoint: 'get' }).length;
  const checkpointOf = async () => (await ctx.app.database.db.select({ at: mailboxes.resyncCheckpoint }).from(mailboxes).where(eq(mailboxes.id, ctx.alice.id)))[0]!.at;

  /** `count` messages into ALICE's inbox, from strangers but every `fromContactEvery`-th from BOB (a contact: kept). */
  async function deliver(count: number, label: string, fromContactEvery = 0) {
    for (let i = 0; i < count; i += 1) {
      const from = fromContactEvery && i % fromContactEvery === 0 ? BOB : `stranger-${label}-${i}@elsewhere.test`;
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from, subject: `${label} ${i}`, text: 'x' });
    }
  }

  /**
   * How many messages a resync of ALICE would read now: the window (a day before the last sync
   * to now) holds every message of the mailbox, and it reads what is neither stored nor in Spam.
   */
  async function unreadInWindow() {
    const stored = new Set((await ctx.query<{ id: string }>(sql`select gmail_message_id as id from messages where mailbox_id = ${ctx.alice.id}::uuid`)).map((r) => r.id));
    return ctx.app.sandbox.control.listMessages(ALICE).filter((m) => !m.labelIds.includes('SPAM') && !stored.has(m.id)).length;
  }

  /** A resync try whose reads start failing once `after` of them were made (history dropped first unless `keepHistory`); it leaves a checkpoint. */
  async function resyncFailingAfter(after: number, options: { keepHistory?: boolean } = {}) {
    if (!options.keepHistory) ctx.app.sandbox.control.truncateHistory(ALICE);
    const start = reads();
    let fault: ActiveFault | undefined;
    const watch = setInterval(() => {
      if (!fault && reads() - start >= after) fault = ctx.app.sandbox.control.injectFault({ kind: 'backendError', endpoint: 'get', mailbox: ALICE, times: 'always' });
    }, 1);
    try {
      expect(await ctx.sync(ctx.alice.id)).toMatchObject({ status: 'failed' });
    } finally {
      clearInterval(watch);
      if (fault) ctx.app.sandbox.control.removeFault(fault.id);
    }
    expect(await checkpointOf()).toMatchObject({ throughId: expect.any(String), historyId: expect.any(String) });
    return reads() - start;
  }

  return { reads, checkpointOf, deliver, unreadInWindow, resyncFailingAfter };
}
