import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import type { Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { explainBuilt } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * The worker asks every tick, for every sending campaign, whether it is done (completeIfDone:
 * nothing queued or in flight). Asked of the ledger (`not exists` over the campaign's queued and
 * sending rows), the planner expected a match within the first few rows of a campaign that is
 * most of the ledger and read it sequentially until one came: every row stored before the
 * campaign's first queued one — its own sent step and other campaigns' history — once a tick
 * while the next step waited for its day (at 100,000 recipients: 98,000 rows, 5,770 buffers a
 * tick on PostgreSQL 15; BENCHMARKS.md, "ninth pass"), and the whole ledger when it was done.
 * Now it reads the counters the ledger keeps (campaign_send_counts, migration 0018). EXPLAIN
 * (ANALYZE, BUFFERS) of the statement as the repo builds it, on the test database (PGlite, or
 * the server with TEST_DATABASE_URL), with another campaign's history and the campaign's own
 * sent step stored before its queued step.
 */
const ROWS = 3_000;

let database: Database;
let workspaceId: string;
let campaignId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  const [ws] = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values ('complete') returning id`));
  workspaceId = ws!.id;
  const campaign = async (status: string) =>
    rowsOf<{ id: string }>(
      await db.execute(sql`
        insert into campaigns (workspace_id, name, kind, subject, topic, status, audience)
        values (${workspaceId}::uuid, ${status}, 'marketing', 'Hi', 'news', ${status}, '{"contactIds":[]}') returning id`),
    )[0]!.id;
  const earlier = await campaign('completed');
  campaignId = await campaign('sending');
  await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}::uuid, 'r' || g || '@complete.test' from generate_series(1, ${ROWS}) g`);
  // In the order they would be stored: the earlier campaign's sends, this one's first step, then its second step, queued.
  for (const [id, step, status] of [[earlier, 0, 'sent'], [campaignId, 0, 'sent'], [campaignId, 1, 'queued']] as const) {
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, due_at)
      select workspace_id, ${id}::uuid, ${step}, id, email, gen_random_uuid()::text || '@complete.test', ${status}::send_status, now() + interval '1 day'
      from recipients where workspace_id = ${workspaceId}::uuid`);
  }
  await db.execute(sql`analyze`);
}, 60_000);
afterAll(() => database?.close());

const statusOf = async () =>
  rowsOf<{ status: string }>(await database.db.execute(sql`select status from campaigns where id = ${campaignId}::uuid`))[0]!.status;

it(`asks whether a campaign with its next step queued is done without reading the ${ROWS * 2} ledger rows stored before it`, async () => {
  const plan = await explainBuilt(database.db, (capture) => createCampaignsRepo(capture).completeIfDone(campaignId, new Date()));
  expect(plan).not.toMatch(/Seq Scan on campaign_sends/);
  // No node read more than a few pages (a node's buffers include its subplans'), not the ledger's.
  const executed = plan.split(/^Planning/m)[0]!;
  const pages = [...executed.matchAll(/Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/g)].map(([, hit, read]) => Number(hit ?? 0) + Number(read ?? 0));
  expect(Math.max(0, ...pages), plan).toBeLessThanOrEqual(20);
  // The EXPLAIN ANALYZE ran it: still sending, its second step is queued.
  expect(await statusOf()).toBe('sending');

  // Done only when nothing is queued or in flight.
  const repo = createCampaignsRepo(database.db);
  await database.db.execute(sql`update campaign_sends set status = 'sent' where campaign_id = ${campaignId}::uuid and status = 'queued' and email <> 'r1@complete.test'`);
  await database.db.execute(sql`update campaign_sends set status = 'sending' where campaign_id = ${campaignId}::uuid and status = 'queued'`);
  await repo.completeIfDone(campaignId, new Date());
  expect(await statusOf()).toBe('sending');
  await database.db.execute(sql`update campaign_sends set status = 'failed' where campaign_id = ${campaignId}::uuid and status = 'sending'`);
  await repo.completeIfDone(campaignId, new Date());
  expect(await statusOf()).toBe('completed');
});
