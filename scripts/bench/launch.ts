/**
 * Launch at scale: `campaigns.launch` (the service call behind POST /api/campaigns/:id/launch:
 * checks, state change and the ledger write in one transaction) beside raw `INSERT … SELECT`
 * statements writing the same rows — the audience's `recipients` rows, then one
 * `campaign_sends` row per contact — in the same database, in the same run.
 *
 *   npm run bench -- launch                  (100,000 recipients)
 *   BENCH_LAUNCH_SIZES=100000,1000000 BENCH_TARGETS=pglite,server npm run bench -- launch
 *
 * Each size gets a fresh database with two workspaces of identical contacts: the baseline
 * writes into one, the service into the other (baseline first, so the service writes into the
 * larger tables). The audience is a segment; at the smallest size (up to 200,000) a second campaign
 * over the same contacts as a list of ids (one uuid[] parameter) is launched too, and the ledger
 * statement is EXPLAINed. Peak heap during the
 * service's launch is sampled every 20 ms: it must not grow with the audience. The EXPLAIN
 * (ANALYZE, BUFFERS) runs in a transaction that is rolled back.
 */
import { sql } from 'drizzle-orm';
import { firstStepSql } from '../../src/campaigns/audience-sql.js';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import type { Db } from '../../src/db/connect.js';
import { analyze, benchServices, explain, fmt, machineLine, openBenchDatabase, rowsOf, seedWorkspace, targets, timed } from './audience-data.js';

// 1,000,000 on PGlite takes ~10 minutes on a busy 2-vCPU machine: ask for it (BENCH_LAUNCH_SIZES=100000,1000000).
const SIZES = (process.env.BENCH_LAUNCH_SIZES ?? '100000').split(',').map(Number);
const DOMAIN = 'acme.test';

async function seedPlainContacts(db: Db, workspaceId: string, count: number) {
  await db.execute(sql`
    insert into contacts (workspace_id, email, first_name, attributes)
    select ${workspaceId}::uuid, case when g % 7 = 0 then 'C' || g || '@Bench.Test' else 'c' || g || '@bench.test' end, 'Name' || g, '{"list":"a"}'::jsonb
    from generate_series(1, ${count}) g`);
}

/** The rows a launch writes, by hand: no service, no checks, no transaction around them. */
async function rawLaunch(db: Db, workspaceId: string, campaignId: string, dueAt: Date) {
  await db.execute(sql`
    insert into recipients (workspace_id, email)
    select workspace_id, email from contacts where workspace_id = ${workspaceId}::uuid and attributes ->> 'list' = 'a'
    on conflict do nothing`);
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, due_at)
    select c.workspace_id, ${campaignId}::uuid, 0, c.id, r.id, c.email, gen_random_uuid()::text || '@' || ${DOMAIN}, ${dueAt.toISOString()}::timestamptz
    from contacts c join recipients r on r.workspace_id = c.workspace_id and lower(r.email) = lower(c.email)
    where c.workspace_id = ${workspaceId}::uuid and c.attributes ->> 'list' = 'a'`);
}

function heapPeak() {
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
  return () => {
    clearInterval(timer);
    return { before, peak: Math.max(peak, process.memoryUsage().heapUsed) };
  };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

console.log(`launch: ${SIZES.map(fmt).join(', ')} recipients; ${machineLine()}`);
for (const target of targets) {
  console.log(`\n[${target}]\nrecipients | ours | raw INSERT … SELECT | ratio | rows written (ours / raw) | heap before → peak during ours`);
  for (const [index, size] of SIZES.entries()) {
    const bench = await openBenchDatabase(target);
    if (!bench) break;
    try {
      const { db } = bench.database;
      const services = benchServices(bench.database);
      const baseline = await seedWorkspace(db, 'Baseline');
      const ours = await seedWorkspace(db, 'Ours');
      await seedPlainContacts(db, baseline.workspaceId, size);
      await seedPlainContacts(db, ours.workspaceId, size);
      await analyze(db);
      const dueAt = new Date(Date.now() + 86_400_000);
      const input = { kind: 'transactional' as const, mailboxId: ours.mailboxId, subject: 'Hi', text: 'Hello', steps: [], startAt: dueAt };
      const segment = { segment: { all: [{ field: 'attributes.list', op: 'eq', value: 'a' }] } };

      const [baseCampaign] = rowsOf<{ id: string }>(
        await db.execute(sql`insert into campaigns (workspace_id, name, kind, subject, audience) values (${baseline.workspaceId}::uuid, 'raw', 'transactional', 'Hi', '{}') returning id`),
      );
      const raw = await timed(() => rawLaunch(db, baseline.workspaceId, baseCampaign!.id, dueAt));
      const campaign = await services.campaigns.create(ours.auth, { ...input, name: 'ours', audience: segment });
      const stopPeak = heapPeak();
      const launched = await timed(() => services.campaigns.launch(ours.auth, campaign.id, {}));
      const heap = stopPeak();
      const [written] = rowsOf<{ ours: number; raw: number }>(
        await db.execute(sql`select count(*) filter (where campaign_id = ${campaign.id}::uuid)::int as ours, count(*) filter (where campaign_id = ${baseCampaign!.id}::uuid)::int as raw from campaign_sends`),
      );
      console.log(
        `${fmt(size).padStart(10)} | ${s(launched.ms)} | ${s(raw.ms)} | ${(launched.ms / raw.ms).toFixed(2)} | ${fmt(Number(written!.ours))} / ${fmt(Number(written!.raw))} | ${mb(heap.before)} → ${mb(heap.peak)}`,
      );
      if (launched.value.progress.queued !== size) console.log(`  ! the service queued ${launched.value.progress.queued} of ${size}`);
      // GET /api/campaigns/:id counts the ledger by state: a read that grows with the audience too.
      const progress = await timed(() => services.campaigns.get(ours.auth, campaign.id));
      console.log(`  GET campaign (progress counts over ${fmt(size)} ledger rows): ${s(progress.ms)}`);

      if (index === 0 && size <= 200_000) {
        // The same contacts as a list of ids: far over the 65,535 bind parameters of one statement.
        const ids = rowsOf<{ id: string }>(await db.execute(sql`select id::text from contacts where workspace_id = ${ours.workspaceId}::uuid`)).map((r) => r.id);
        const byIds = await services.campaigns.create(ours.auth, { ...input, name: 'ours by ids', audience: { contactIds: ids } });
        const idsLaunch = await timed(() => services.campaigns.launch(ours.auth, byIds.id, {}));
        console.log(`  by ${fmt(ids.length)} contact ids (recipients rows exist already): ${s(idsLaunch.ms)}, queued ${fmt(idsLaunch.value.progress.queued)}`);

        const row = (await createCampaignsRepo(db).findById(ours.workspaceId, campaign.id))!;
        const plan = await db
          .transaction(async (tx) => {
            const [fresh] = rowsOf<{ id: string }>(
              await tx.execute(sql`insert into campaigns (workspace_id, name, kind, subject, audience) values (${ours.workspaceId}::uuid, 'explain', 'transactional', 'Hi', '{}') returning id`),
            );
            const text = await explain(tx as unknown as Db, firstStepSql({ ...row, id: fresh!.id }, DOMAIN, dueAt).sends);
            throw Object.assign(new Error('rollback'), { plan: text });
          })
          .catch((error: { plan?: string }) => error.plan ?? String(error));
        console.log(`\n  EXPLAIN (ANALYZE, BUFFERS) of the ledger statement, ${target}, ${fmt(size)} (a fresh campaign, rolled back):\n${plan}\n`);
        const progressPlan = await explain(
          db,
          sql`select status, count(*)::int as n, min(due_at) filter (where status = 'queued') as next_due from campaign_sends where campaign_id = ${campaign.id}::uuid group by status`,
        );
        console.log(`  EXPLAIN (ANALYZE, BUFFERS) of the progress counts (the query of repo.progress), ${target}, ${fmt(size)}:\n${progressPlan}\n`);
      }
    } finally {
      await bench.close();
    }
  }
}
