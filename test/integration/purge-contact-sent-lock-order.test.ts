import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createLogger } from '../../src/logger.js';
import { createPurgeRepo } from '../../src/privacy/purge.repo.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A contact's purge locked the contact's row (`for update`), then its addresses' locks; a sent
 * record with a next step takes the recipient's address lock (holdOrderLock), then writes the
 * ledger and the next step's row, whose foreign key takes the contact's key. Met in between —
 * the record holding the address, the purge the contact — each waited for the other: a deadlock
 * (40P01), the purge or the record of mail Gmail had already accepted given up. The purge now
 * takes the address locks first, the order of every other taker (claims, opt-outs, sent records).
 *
 * Forced: a third session holds the ledger row as the record begins, so the record stops right
 * after its address lock; the purge then runs as far as it can, and the third session lets go.
 * Server only: PGlite runs one transaction at a time (and the record takes no address lock there).
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = `purge-order-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };
const db = () => ctx.app.database.db;

beforeAll(async () => {
  if (onServer) mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
});

it.runIf(onServer)("a contact's purge meeting its sent record (with a next step) waits for it, no deadlock (server)", async () => {
  const [person] = await fx.audience(1, { prefix: 'purged' });
  const campaignId = await fx.launched(mailbox.id, 'Purge order', [person!.id], { kind: 'transactional', steps: [{ afterDays: 1, text: 'Following up' }] });

  const url = (ctx.app.database as unknown as { url: string }).url;
  const holder = new pg.Client({ connectionString: url });
  const watcher = new pg.Client({ connectionString: url });
  await Promise.all([holder.connect(), watcher.connect()]);
  const waiters = (n: number) => waitForLockWaiters(watcher, n);
  const logged: string[] = [];
  let purged: Promise<{ ok: boolean; error?: unknown }> | undefined;
  let interleaved: Promise<void> | undefined;
  try {
    const worker = separateWorker(ctx.app, {
      concurrency: 1,
      logger: createLogger('warn', { write: (line: string) => void logged.push(line) }),
      afterGmailAccepted: async (sendId) => {
        // Deleted while the step was in flight: its purge may run (its precondition, set as the deletion sets it).
        await db().execute(sql`update contacts set deleted_at = now() where id = ${person!.id}::uuid`);
        await holder.query('begin');
        await holder.query('select id from campaign_sends where id = $1 for update', [sendId]);
        interleaved = (async () => {
          await waiters(1); // the record holds the address lock and waits for the ledger row
          purged = createPurgeRepo(db())
            .transaction((tx) => tx.purgeContact(person!.id, (address) => `hash:${address.length}`))
            .then(() => ({ ok: true }), (error: unknown) => ({ ok: false, error }));
          await waiters(2); // the purge waits too
          await holder.query('commit');
        })();
      },
    });
    await worker.tick();
    await interleaved;
    const purge = await purged!;
    expect(purge.error).toBeUndefined();
    expect(logged.filter((line) => /deadlock|40P01/.test(line))).toEqual([]);
    // The record committed first (its next step queued), and the purge then removed both rows.
    expect(rowsOf(await db().execute(sql`select id from campaign_sends where campaign_id = ${campaignId}::uuid`))).toEqual([]);
    expect(rowsOf(await db().execute(sql`select id from contacts where id = ${person!.id}::uuid`))).toEqual([]);
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await Promise.all([holder.end(), watcher.end()]);
  }
}, 30_000);
