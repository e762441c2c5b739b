import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { createSignals } from '../../src/gmail/signals.js';
import { createSyncRepo } from '../../src/gmail/sync.repo.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A bounce notice that names several recipients (a 1:1 mail to two people, both failed) took
 * their address locks one by one, in the notice's order, each with its suppression. The gate's
 * group claim and a group's sent record (holdOrderLock) take several in key order: with the
 * notice's order the reverse of the keys', each held one lock and waited for the other — a
 * deadlock, which the server ends by failing one of them (a second later): sync's transaction,
 * or the sent record of mail Gmail had already accepted. The notice's recipients are now locked
 * together, in key order, before any is suppressed.
 *
 * Deterministic with a second session standing in for a key-order taker: it holds the lower
 * key; once sync's transaction waits, it asks for the higher one. Server only: PGlite runs one
 * transaction at a time, nothing interleaves.
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const SENDER = `bounce-order-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;
const lockKeyOf = (email: string) => sql`hashtextextended(${ctx.owner.workspaceId}::text || ':' || lower(${email}), 0)`;

beforeAll(async () => {
  if (!onServer) return;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER);
});

it.runIf(onServer)("a notice naming two recipients in the reverse of their locks' order does not deadlock with a key-order taker (server)", async () => {
  // Two addresses, `first` named first by the notice, whose lock keys sort the other way round.
  let first = '';
  let second = '';
  for (let i = 0; !first; i += 1) {
    const [a, b] = [`gone-a${i}@contoso.test`, `gone-b${i}@contoso.test`];
    const [row] = await query<{ reversed: boolean }>(sql`select ${lockKeyOf(a)} > ${lockKeyOf(b)} as reversed`);
    if (row!.reversed) [first, second] = [a, b];
  }
  const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: [first, second], subject: 'To both', text: 'hi' } });
  expect(sent.status, sent.text).toBe(201);
  const [original] = await query<{ id: string; rfc822_message_id: string | null; at: Date }>(sql`select id, rfc822_message_id, at from messages where id = ${sent.body.id}::uuid`);

  const url = (ctx.app.database as unknown as { url: string }).url;
  const other = new pg.Client({ connectionString: url });
  const watch = new pg.Client({ connectionString: url });
  await Promise.all([other.connect(), watch.connect()]);
  try {
    const keyOf = async (email: string) => (await query<{ k: string }>(sql`select ${lockKeyOf(email)}::text as k`))[0]!.k;
    // `first`'s key is the higher: a key-order taker takes `second`'s, then `first`'s.
    const [high, low] = [await keyOf(first), await keyOf(second)];
    // A key-order taker (a group's claim or sent record) holds the lower key…
    await other.query('begin');
    await other.query('select pg_advisory_xact_lock($1::bigint)', [low]);

    const signals = createSignals(ctx.app.config.signals);
    const repo = createSyncRepo(ctx.app.database.db, createAddressHasher(ctx.app.config.privacy.suppressionHashKey));
    const hard = (address: string) => ({ address, action: 'failed' as const, status: '5.1.1', class: 'hard' as const, reason: 'unknown_user' as const });
    const recorded = repo.transaction((tx) =>
      signals.recordBounces(tx, {
        workspaceId: ctx.owner.workspaceId,
        matches: [{ original: { id: original!.id, rfc822MessageId: original!.rfc822_message_id ?? '', toAddresses: [first, second], ccAddresses: [], bccAddresses: [], at: original!.at }, recipients: [hard(first), hard(second)] }],
        sourceGmailMessageId: `dsn-${Date.now()}`,
        format: 'rfc3464',
        syncedMessageId: original!.id,
        at: new Date(),
      }),
    ).then((r) => ({ ok: true as const, r }), (error: unknown) => ({ ok: false as const, error }));
    // …sync's transaction waits for it…
    const deadline = Date.now() + 15_000;
    // This database's waits only: pg_locks is the whole server's, and other test files run beside this one.
    while (!(await watch.query(`select 1 from pg_locks where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`)).rowCount) {
      if (Date.now() > deadline) throw new Error('sync never waited for the lock');
      await new Promise((r) => setTimeout(r, 20));
    }
    // …and the taker asks for the higher key, as its statement goes on.
    const taker = await other.query('select pg_advisory_xact_lock($1::bigint)', [high]).then(() => 'ok', (error: { code?: string }) => error.code ?? 'error');
    await other.query(taker === 'ok' ? 'commit' : 'rollback');
    const outcome = await recorded;
    expect({ taker, sync: outcome.ok ? 'ok' : ((outcome.error as { code?: string }).code ?? String(outcome.error)) }).toEqual({ taker: 'ok', sync: 'ok' });
    const suppressed = await query<{ email: string }>(sql`select lower(email) as email from suppressions where workspace_id = ${ctx.owner.workspaceId}::uuid and lower(email) in (${first}, ${second}) order by 1`);
    expect(suppressed.map((s) => s.email)).toEqual([first, second].sort());
  } finally {
    await other.end();
    await watch.end();
  }
}, 60_000);
