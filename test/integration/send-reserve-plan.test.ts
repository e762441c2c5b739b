import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * A batch's reservation (reserveDue) takes a campaign's earliest due queued rows. A launch gives
 * every row the same due_at; ordered by (due_at, id), which the index (campaign, status, due_at)
 * does not hold, each reservation read and sorted all of the campaign's queued rows to keep the
 * first batch: 140 ms a batch at 100,000 queued on PostgreSQL 15, and the whole send grew with
 * the square of the audience (BENCHMARKS.md, "eighth pass"). EXPLAIN (ANALYZE, BUFFERS) of the
 * statement as the repo builds it, on the test database (PGlite, or the server with
 * TEST_DATABASE_URL), with 3,000 queued rows launched at one instant: the index gives the rows
 * in order and the scan stops after the batch, and the update finds those rows by key (written
 * `in (…)`, the planner joined them against a read of the whole ledger: 40,000 tuples a batch
 * with 20,000 recipients, in `npm run bench -- plans`).
 */
const QUEUED = 3_000;
const BATCH = 50;

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
  await db.execute(sql`analyze campaign_sends`);
}, 60_000);
afterAll(() => database?.close());

const literal = (value: unknown) => (value === null || value === undefined ? 'null' : `'${String(value).replace(/'/g, "''")}'`);

it(`reserves a batch of ${BATCH} of ${QUEUED} queued rows launched at one instant without reading or sorting the rest`, async () => {
  let captured: SQL | undefined;
  const capture = { execute: async (query: SQL) => ((captured = query), { rows: [] }) } as unknown as Db;
  await createSendLedgerRepo(capture).reserveDue(campaign, 'plan', BATCH, new Date(), new Date(Date.now() + 60_000));
  const query = new PgDialect().sqlToQuery(captured!);
  const text = query.sql.replace(/\$(\d+)/g, (_m, i: string) => literal(query.params[Number(i) - 1]));
  const plan = rowsOf<Record<string, string>>(await database.db.execute(sql.raw(`explain (analyze, buffers) ${text}`)))
    .map((r) => Object.values(r)[0]!)
    .join('\n');
  expect(plan).not.toMatch(/Sort/);
  // The update finds the batch's rows by key: not a join against a read of the whole ledger.
  expect(plan).not.toMatch(/Seq Scan on campaign_sends/);
  // The scan of the campaign's queued rows returns the batch and stops (the update's own probes by id are separate).
  const scans = [...plan.matchAll(/Index Scan using campaign_sends_campaign_status_due_idx on campaign_sends .*actual time=\S+ rows=(\d+)/g)];
  expect(scans, plan).toHaveLength(1);
  expect(Number(scans[0]![1]), plan).toBeLessThanOrEqual(BATCH);
  // And reservations go on through the queue: each takes a batch none before it took (the EXPLAIN
  // ANALYZE above ran, so its batch is reserved already), until none is left.
  const ledger = createSendLedgerRepo(database.db);
  const seen = new Set<string>();
  for (let batch = 1; batch < QUEUED / BATCH; batch++) {
    const reserved = await ledger.reserveDue(campaign, `worker-${batch}`, BATCH, new Date(), new Date(Date.now() + 60_000));
    expect(reserved).toHaveLength(BATCH);
    for (const send of reserved) {
      expect(seen.has(send.id)).toBe(false);
      seen.add(send.id);
    }
  }
  expect(await ledger.reserveDue(campaign, 'late', BATCH, new Date(), new Date(Date.now() + 60_000))).toEqual([]);
});
