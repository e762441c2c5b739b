import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import type { Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { explainBuilt } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * Every tick (once a second, in every worker process) the send worker asks which campaigns it
 * may serve (`activeCampaigns`: sending, or scheduled and due) and which paused ones wait for a
 * mailbox to serve them again (`pausedForMailbox`). Campaigns of every workspace stay in the table
 * when they finish, so a read of the whole table grows with every campaign ever sent; the
 * partial index of running campaigns (migration 0032) holds only the few that are not finished.
 * EXPLAIN (ANALYZE, BUFFERS) of the statements as the repo builds them, on the test database
 * (PGlite, or the server with TEST_DATABASE_URL), beside 3,000 finished campaigns.
 */
const FINISHED = 3_000;

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  const [ws] = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values ('tick') returning id`));
  const insert = (count: number, status: string, reason: string | null = null) =>
    db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, html, status, status_reason, audience)
      select ${ws!.id}::uuid, ${status} || g, 'marketing', 'Hi', repeat('<p>body</p>', 40), ${status}::campaign_status, ${reason}, '{"contactIds":[]}'
      from generate_series(1, ${count}) g`);
  await insert(FINISHED / 2, 'completed');
  await insert(FINISHED / 2, 'cancelled');
  await insert(2, 'sending');
  await insert(1, 'scheduled');
  await db.execute(sql`update campaigns set start_at = now() - interval '1 minute' where status = 'scheduled'`);
  // And one scheduled for tomorrow, which is not served yet.
  await insert(1, 'scheduled');
  await db.execute(sql`update campaigns set start_at = now() + interval '1 day' where status = 'scheduled' and start_at is null`);
  await insert(1, 'paused', 'mailbox_needs_reconnect');
  await insert(1, 'draft');
  await db.execute(sql`analyze campaigns`);
}, 60_000);
afterAll(() => database?.close());

/** The largest buffer count of any node of the executed plan (a node's buffers include its children's). */
const largestRead = (plan: string) =>
  Math.max(
    0,
    ...[...plan.split(/^Planning/m)[0]!.matchAll(/Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/g)].map(([, hit, read]) => Number(hit ?? 0) + Number(read ?? 0)),
  );

it(`finds the campaigns to serve without reading the ${FINISHED} finished ones`, async () => {
  const plan = await explainBuilt(database.db, (capture) => createCampaignsRepo(capture).activeCampaigns(new Date()));
  expect(plan).not.toMatch(/Seq Scan on campaigns/);
  expect(largestRead(plan), plan).toBeLessThanOrEqual(12);
  const found = await createCampaignsRepo(database.db).activeCampaigns(new Date());
  expect(found.map((c) => c.status).sort()).toEqual(['scheduled', 'sending', 'sending']);
});

it(`finds the campaigns paused for their mailbox without reading the ${FINISHED} finished ones`, async () => {
  const plan = await explainBuilt(database.db, (capture) => createCampaignsRepo(capture).pausedForMailbox());
  expect(plan).not.toMatch(/Seq Scan on campaigns/);
  expect(largestRead(plan), plan).toBeLessThanOrEqual(12);
  const found = await createCampaignsRepo(database.db).pausedForMailbox();
  expect(found.map((c) => c.statusReason)).toEqual(['mailbox_needs_reconnect']);
});
