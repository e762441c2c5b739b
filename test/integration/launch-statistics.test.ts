import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import type { CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { explainBuilt } from '../helpers/explain.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { scheduledReceipt } from '../helpers/seed-campaign.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A launch that writes many ledger rows analyses the ledger after its commit (campaigns.repo.ts
 * `analyzeLedgerAfterLaunch`). Until statistics show the new rows the planner believed the
 * campaign had one queued row, and each batch's reservation read and sorted all of them through
 * (campaign_id, status, due_at) instead of taking the batch from the front of the queued index
 * (on the server right after a 100,000 launch: 66–70 ms a batch, a sort spilled to disk;
 * BENCHMARKS.md, thirteenth pass). A small launch leaves the statistics to autovacuum. At this
 * test's 20,000 rows, without the ANALYZE, the server's planner made that choice and sorted all
 * of them (PostgreSQL 15; at 3,000 it happened to choose well); PGlite chose well either way, so
 * there the test proves the ANALYZE ran.
 */
const ctx = useAppWithOwner();
let mailboxId: string;
const LARGE = 20_000;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, 'stats-sender@acme.test')).id;
});

const auth = () => ({ userId: ctx.owner.userId, workspaceId: ctx.owner.workspaceId, role: 'owner' as const });
/** The ledger's row estimate, and how many ANALYZE commands it has had (autovacuum's own are counted apart, so a server's autovacuum cannot move this). */
const ledgerStatistics = async () =>
  rowsOf<{ tuples: number; analyses: number }>(
    await ctx.app.database.db.execute(sql`
      select reltuples::float8 as tuples, pg_stat_get_analyze_count(oid)::int as analyses from pg_class where oid = 'campaign_sends'::regclass`),
  ).map((r) => ({ tuples: Number(r.tuples), analyses: Number(r.analyses) }))[0]!;

async function launchTo(batch: string, size: number): Promise<string> {
  const db = ctx.app.database.db;
  await db.execute(sql`
    insert into contacts (workspace_id, email, attributes)
    select ${ctx.owner.workspaceId}::uuid, ${batch} || g || '@example.test', jsonb_build_object('batch', ${batch}::text) from generate_series(1, ${size}) g`);
  const ids = rowsOf<{ id: string }>(await db.execute(sql`select id::text from contacts where attributes ->> 'batch' = ${batch}`)).map((r) => r.id);
  // Scheduled for tomorrow: nothing is sent, the rows stay queued.
  const campaign = await scheduledReceipt(ctx.app.services.campaigns, auth(), { name: batch, mailboxId, contactIds: ids });
  const launched = await ctx.app.services.campaigns.launch(auth(), campaign.id, {});
  expect(launched.progress.queued).toBe(size);
  return campaign.id;
}

it(`analyses the ledger after a launch of ${LARGE}, so a batch's reservation reads its batch from the queued index; a small launch does not`, async () => {
  const before = await ledgerStatistics();
  const large = await launchTo('large', LARGE);
  const after = await ledgerStatistics();
  expect(after).toEqual({ tuples: LARGE, analyses: before.analyses + 1 });

  const campaign = { id: large } as CampaignRow;
  const later = new Date(Date.now() + 2 * 86_400_000);
  const plan = await explainBuilt(ctx.app.database.db, (capture) => createSendLedgerRepo(capture).reserveDue(campaign, 'plan', 500, later, new Date(later.getTime() + 60_000)));
  expect(plan).toMatch(/Index Scan using campaign_sends_queued_due_idx/);
  expect(plan).not.toMatch(/Sort Key: (?!reserved\.)/);

  // 20 rows: under autovacuum's threshold (50 + 10% of 20,000), no ANALYZE.
  await launchTo('small', 20);
  expect((await ledgerStatistics()).analyses).toBe(after.analyses);
}, 120_000);
