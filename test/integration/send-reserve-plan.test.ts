import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { explainBuilt } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * A batch's reservation (reserveDue) takes a campaign's earliest due queued rows, ties by id. A
 * launch gives every row the same due_at; ordered by (due_at, id), which the index (campaign,
 * status, due_at) does not hold, each reservation read and sorted all of the campaign's queued
 * rows to keep the first batch (EXPLAIN at 100,000 queued on PostgreSQL 15: 140 ms, an external
 * sort; the whole send grew with the square of the audience; BENCHMARKS.md, "eighth pass",
 * migration 0029). EXPLAIN (ANALYZE, BUFFERS) of the statement as the repo builds it, on the
 * test database (PGlite, or the server with TEST_DATABASE_URL), with 3,000 rows queued at one
 * instant: the index of queued rows gives them in order and the scan stops after the batch, and
 * the update finds those rows by key (written `in (…)`, the planner joined them against a read
 * of the whole ledger, here already).
 */
const QUEUED = 3_000;
const BATCH = 50;
/** Rows due a minute before the launch's rows, written after them. */
const EARLIER = 30;

let database: Database;
let campaign: CampaignRow;
beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  const [ws] = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values ('reserve') returning id`));
  const workspaceId = ws!.id;
  const [row] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, topic, status, audience)
      values (${workspaceId}::uuid, 'reserve', 'marketing', 'Hi', 'news', 'sending', '{"contactIds":[]}') returning id`),
  );
  campaign = { id: row!.id, workspaceId } as unknown as CampaignRow;
  await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}::uuid, 'q' || g || '@reserve.test' from generate_series(1, ${QUEUED}) g`);
  // One due_at for every row, as a launch writes them (one statement's now()).
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, due_at)
    select workspace_id, ${campaign.id}::uuid, 0, id, email, gen_random_uuid()::text || '@reserve.test', now() - interval '1 minute'
    from recipients where workspace_id = ${workspaceId}::uuid`);
  // Due earlier than those but written after them (last in the table), and some not due yet.
  for (const [step, count, due] of [[1, EARLIER, '2 minutes'], [2, 10, '-1 day']] as const) {
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, due_at)
      select workspace_id, ${campaign.id}::uuid, ${step}, id, email, gen_random_uuid()::text || '@reserve.test', now() - ${due}::interval
      from recipients where workspace_id = ${workspaceId}::uuid order by email limit ${count}`);
  }
  await db.execute(sql`analyze campaign_sends`);
}, 60_000);
afterAll(() => database?.close());

it(`reserves a batch of ${BATCH} of ${QUEUED} queued rows launched at one instant without reading or sorting the rest`, async () => {
  const plan = await explainBuilt(database.db, (capture) => createSendLedgerRepo(capture).reserveDue(campaign, 'plan', BATCH, new Date(), new Date(Date.now() + 60_000)));
  // No sort of the campaign's rows (the one sort left is of the batch, as it is returned).
  expect(plan).not.toMatch(/Sort Key: (?!reserved\.)/);
  expect(plan).toMatch(/Sort Key: reserved\.due_at, reserved\.id/);
  // The update finds the batch's rows by key: not a join against a read of the whole ledger.
  expect(plan).not.toMatch(/Seq Scan on campaign_sends/);
  // The scan of the campaign's queued rows returns the batch and stops (the update's own probes by id are separate).
  const scans = [...plan.matchAll(/Index Scan using campaign_sends_queued_due_idx on campaign_sends .*actual time=\S+ rows=(\d+)/g)];
  expect(scans, plan).toHaveLength(1);
  expect(Number(scans[0]![1]), plan).toBeLessThanOrEqual(BATCH);

  // The EXPLAIN ANALYZE ran: its batch (the earlier rows first, then the launch's by id) is reserved.
  const dueOrder = rowsOf<{ id: string }>(
    await database.db.execute(sql`select id from campaign_sends where campaign_id = ${campaign.id}::uuid and due_at <= now() order by due_at, id`),
  ).map((r) => r.id);
  const planned = rowsOf<{ id: string }>(await database.db.execute(sql`select id from campaign_sends where lease_owner = 'plan'`)).map((r) => r.id);
  expect(planned.sort()).toEqual(dueOrder.slice(0, BATCH).sort());
  // Later batches go on in due order, returned in that order; a batch handed back keeps its place;
  // rows not due yet are never taken.
  const ledger = createSendLedgerRepo(database.db);
  const until = () => new Date(Date.now() + 60_000);
  const handedBack = await ledger.reserveDue(campaign, 'stopped', BATCH, new Date(), until());
  await ledger.releaseReservations('stopped', handedBack.map((r) => r.id));
  const taken: string[] = [];
  for (;;) {
    const batch = await ledger.reserveDue(campaign, `worker-${taken.length}`, BATCH, new Date(), until());
    if (batch.length === 0) break;
    taken.push(...batch.map((r) => r.id));
  }
  expect(taken).toEqual(dueOrder.slice(BATCH));
  expect(taken.slice(0, BATCH)).toEqual(handedBack.map((r) => r.id));
});

/*
 * Migration 0036: no ledger index holds the lease's expiry (the `sending` rows are indexed by id)
 * and the table leaves 15% of each page free, so a reservation, its release and a lease's renewal
 * are HOT updates: the row's new version stays on its page and no index gets an entry. Before,
 * a reservation of 500 at 100,000 queued wrote ~28 buffers a row into the ledger's indexes.
 * Counted by this session's statistics of the transaction (pg_stat_get_xact_*), which no other session moves.
 */
it('reserves and hands back a batch as HOT updates: the ledger indexes get no entries', async () => {
  const counts = async (tx: Db) =>
    rowsOf<{ updated: number; hot: number }>(
      await tx.execute(sql`
        select pg_stat_get_xact_tuples_updated('campaign_sends'::regclass)::int as updated,
               pg_stat_get_xact_tuples_hot_updated('campaign_sends'::regclass)::int as hot`),
    )[0]!;
  // Rows of their own, as a launch writes them: the first test's reservations used its pages' room.
  const db = database.db;
  const [row] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, topic, status, audience)
      values (${campaign.workspaceId}::uuid, 'hot', 'marketing', 'Hi', 'news', 'sending', '{"contactIds":[]}') returning id`),
  );
  const hot = { id: row!.id, workspaceId: campaign.workspaceId } as unknown as CampaignRow;
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, due_at)
    select workspace_id, ${hot.id}::uuid, 0, id, email, gen_random_uuid()::text || '@reserve.test', now() - interval '1 minute'
    from recipients where workspace_id = ${campaign.workspaceId}::uuid`);
  await database.db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const ledger = createSendLedgerRepo(tx);
    // Counts not yet published include earlier transactions' (PostgreSQL ≥ 15): differences within this one.
    const before = await counts(tx);
    const since = async () => {
      const now = await counts(tx);
      return { updated: now.updated - before.updated, hot: now.hot - before.hot };
    };
    const batch = await ledger.reserveDue(hot, 'hot', BATCH, new Date(), new Date(Date.now() + 60_000));
    expect(batch).toHaveLength(BATCH);
    expect(await since()).toEqual({ updated: BATCH, hot: BATCH });
    await ledger.releaseReservations('hot', batch.map((r) => r.id));
    // A page that got several of the batch's rows may have no room left for the last ones'
    // releases (the reservation's versions are still live in this transaction): nearly all, not
    // all (a review's 750 repetitions on the server: 46–50 of the 50 releases; before migration
    // 0036, none of either).
    const released = await since();
    expect(released.updated).toBe(2 * BATCH);
    expect(released.hot).toBeGreaterThanOrEqual(BATCH + BATCH * 0.8);
  });
  // The `sending` rows (crash recovery) are read through their own small index, not the ledger.
  await database.db.execute(sql`
    update campaign_sends set status = 'sending', lease_owner = 'gone', lease_expires_at = now() - interval '1 minute', attempts = 1, claimed_at = now()
    where id in (select id from campaign_sends where campaign_id = ${hot.id}::uuid order by id limit 3)`);
  await database.db.execute(sql`analyze campaign_sends`);
  const plan = await explainBuilt(database.db, (capture) => createSendLedgerRepo(capture).expiredLeases(new Date()));
  expect(plan).toMatch(/campaign_sends_sending_idx/);
  expect(plan).not.toMatch(/Seq Scan on campaign_sends/);
  expect(await createSendLedgerRepo(database.db).expiredLeases(new Date())).toHaveLength(3);
});
