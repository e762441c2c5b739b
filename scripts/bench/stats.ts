/**
 * Campaign stats at scale: GET /api/campaigns/:id/stats's service (rollups and the
 * ledger's send counters, a few rows each) beside the raw recount (the GROUP BY over the
 * events and the count over the campaign's sends that they replace), same database, same
 * run. Events are generated on the server with generate_series, then the
 * rollups are built by the migration's backfill statements (the same rules as the writer;
 * the bench checks that both give the same numbers).
 *
 *   npm run bench -- stats                                   # PGlite: 100k sends × 500k events
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench -- stats   # server: 100k × 5M
 *   BENCH_SENDS=100000 BENCH_EVENTS=5000000 BENCH_STATS_READS=50 …
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import type { AuthContext } from '../../src/auth/auth.service.js';
import { MIGRATIONS_FOLDER, type Db } from '../../src/db/connect.js';
import { ensureTrackingPartitions } from '../../src/tracking/partitions.js';
import { createStatsRepo, mailEventCountsQuery } from '../../src/tracking/stats.repo.js';
import { createStatsService } from '../../src/tracking/stats.service.js';
import { machine, percentile, scratchDatabase, seedBenchCampaign } from './common.js';

const SERVER_URL = process.env.BENCH_DATABASE_URL;
const SENDS = Number(process.env.BENCH_SENDS ?? 100_000);
const EVENTS = Number(process.env.BENCH_EVENTS ?? (SERVER_URL ? 5_000_000 : 500_000));
const READS = Number(process.env.BENCH_STATS_READS ?? 50);
const RECOUNTS = Number(process.env.BENCH_RECOUNTS ?? 3);
/** Bounces and replies on this campaign's mail, and on other campaigns' mail in the same workspace. */
const MAIL_EVENTS = Number(process.env.BENCH_MAIL_EVENTS ?? Math.round(SENDS * 0.1));
const OTHER_MAIL_EVENTS = Number(process.env.BENCH_OTHER_MAIL_EVENTS ?? (SERVER_URL ? 1_000_000 : 100_000));

const rowsOf = <T>(result: unknown) => (result as { rows: T[] }).rows;

/** The migration's backfill: every statement after its DDL (they start with INSERT or UPDATE). */
function backfillStatements(): string[] {
  const text = readFileSync(path.join(MIGRATIONS_FOLDER, '0007_tracking_rollups.sql'), 'utf8');
  return text
    .split('--> statement-breakpoint')
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter((s) => /^(INSERT|UPDATE)/i.test(s));
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await work();
  return [result, performance.now() - started];
}

/**
 * Every sent send gets its message row (as the send worker writes it); MAIL_EVENTS of them get a
 * bounce (30%, a third of them soft) or a reply (70%). OTHER_MAIL_EVENTS more land on a second
 * campaign of the same workspace, so a read that scans the workspace's mail events shows.
 */
async function seedMailEvents(db: Db, workspaceId: string, campaignId: string) {
  const [other] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, audience, status)
      values (${workspaceId}, 'Bench stats, earlier campaign', 'marketing', 'Earlier', '{"contactIds":[]}'::jsonb, 'completed') returning id`),
  );
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, status, rfc822_message_id, sent_at)
    select workspace_id, ${other!.id}, 0, id, email, 'sent', gen_random_uuid() || '@bench.test', now() - interval '60 days'
    from recipients where workspace_id = ${workspaceId}`);
  await db.execute(sql`
    with sends as (select id, email, row_number() over () as n from campaign_sends where workspace_id = ${workspaceId}),
    written as (
      insert into messages (workspace_id, direction, status, rfc822_message_id, from_address, to_addresses)
      select ${workspaceId}, 'outbound', 'sent', s.id::text, 'sender@bench.test', array[s.email] from sends s
      returning id, rfc822_message_id)
    update campaign_sends s set message_id = w.id from written w where s.id = w.rfc822_message_id::uuid`);
  const events = (campaign: string, count: number) => sql`
    insert into mail_events (workspace_id, campaign_id, recipient_id, message_id, type, source_gmail_message_id, recipient, detail, at)
    select ${workspaceId}, ${campaign}, s.recipient_id, s.message_id,
           case when r.k < 0.3 then 'bounce'::mail_event_type else 'reply'::mail_event_type end,
           'bench-' || r.i, s.email,
           case when r.k < 0.2 then '{"kind":"hard"}'::jsonb when r.k < 0.3 then '{"kind":"soft"}'::jsonb else '{}'::jsonb end,
           now() - (random() * interval '30 days')
    from (select i, random() as k, 1 + floor(random() * ${SENDS}::int)::int as n from generate_series(1, ${count}::int) i) r
    join (select message_id, recipient_id, email, row_number() over () as n from campaign_sends where campaign_id = ${campaign}) s on s.n = r.n
    on conflict do nothing`;
  await db.execute(events(campaignId, MAIL_EVENTS));
  for (let done = 0; done < OTHER_MAIL_EVENTS; done += 1_000_000) await db.execute(events(other!.id, Math.min(1_000_000, OTHER_MAIL_EVENTS - done)));
}

async function main() {
  const { database, label, drop } = await scratchDatabase(SERVER_URL, 'inboxtrail-bench-stats');
  const db: Db = database.db;
  try {
    await database.migrate();
    console.log(machine());
    console.log(`database: ${label}; ${SENDS.toLocaleString('en')} sends × ${EVENTS.toLocaleString('en')} events in one campaign; ${MAIL_EVENTS.toLocaleString('en')} bounces and replies on it, ${OTHER_MAIL_EVENTS.toLocaleString('en')} on another campaign of the workspace\n`);

    const [generated, generateMs] = await timed(async () => {
      const { workspaceId, campaignId } = await seedBenchCampaign(db, 'Bench stats', SENDS);
      // The months the events fall in exist as partitions, as the scheduled job would have made them.
      await ensureTrackingPartitions(db, { now: new Date(Date.now() - 31 * 86_400_000), months: 2 });
      // Events: ~70% opens, 30% clicks over 6 links (one the honeypot); verdicts ~30% human,
      // 50% machine, 20% unknown; times spread over 30 days. Generated in slices of 1M rows.
      await db.execute(sql`create temporary table bench_sends as select row_number() over () as n, id from campaign_sends where campaign_id = ${campaignId}`);
      await db.execute(sql`create index on bench_sends (n)`);
      for (let from = 1; from <= EVENTS; from += 1_000_000) {
        const to = Math.min(EVENTS, from + 999_999);
        await db.execute(sql`
          insert into tracking_events (id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons)
          select gen_random_uuid(), ${workspaceId}, ${campaignId}, s.id,
                 case when r.t < 0.7 then 'open'::tracking_event_type else 'click'::tracking_event_type end,
                 case when r.t < 0.7 then null else floor(r.l * 6)::int end,
                 now() - interval '30 days' + (r.at * interval '30 days'), 'GET', null, null,
                 case when r.c < 0.3 then 'human'::hit_classification when r.c < 0.8 then 'machine'::hit_classification else 'unknown'::hit_classification end,
                 '{bench}'
          from (select i, random() as t, random() as l, random() as at, random() as c, 1 + floor(random() * ${SENDS}::int)::int as n
                from generate_series(${from}::int, ${to}::int) i) r
          join bench_sends s on s.n = r.n`);
      }
      await seedMailEvents(db, workspaceId, campaignId);
      await db.execute(sql`analyze`);
      return { workspaceId, campaignId };
    });
    console.log(`generated in ${(generateMs / 1000).toFixed(1)} s`);

    const [, backfillMs] = await timed(async () => {
      for (const statement of backfillStatements()) await db.execute(sql.raw(statement));
      await db.execute(sql`analyze`);
    });
    console.log(`rollups built by the migration's backfill in ${(backfillMs / 1000).toFixed(1)} s\n`);

    const auth: AuthContext = { workspaceId: generated.workspaceId, userId: generated.workspaceId, role: 'owner' };
    const repo = createStatsRepo(db);
    const fromRollups = createStatsService({ repo });
    const fromEvents = createStatsService({ repo: { ...repo, eventCounts: repo.eventCountsFromEvents, sendCounts: repo.sendCountsFromLedger } });

    // Warm-up, and the check that both paths say the same.
    const viaRollups = await fromRollups.campaignStats(auth, generated.campaignId);
    const [viaEvents, firstRecountMs] = await timed(() => fromEvents.campaignStats(auth, generated.campaignId));
    const same = JSON.stringify(viaRollups) === JSON.stringify(viaEvents);

    const rollupTimes: number[] = [];
    for (let i = 0; i < READS; i += 1) rollupTimes.push((await timed(() => fromRollups.campaignStats(auth, generated.campaignId)))[1]);
    const recountTimes: number[] = [firstRecountMs];
    for (let i = 1; i < RECOUNTS; i += 1) recountTimes.push((await timed(() => fromEvents.campaignStats(auth, generated.campaignId)))[1]);
    const eventCountsOnly: number[] = [];
    for (let i = 0; i < READS; i += 1) eventCountsOnly.push((await timed(() => repo.eventCounts(generated.workspaceId, generated.campaignId)))[1]);
    const sendCountsOnly: number[] = [];
    for (let i = 0; i < READS; i += 1) sendCountsOnly.push((await timed(() => repo.sendCounts(generated.workspaceId, generated.campaignId)))[1]);
    const mailEventsOnly: number[] = [];
    for (let i = 0; i < READS; i += 1) mailEventsOnly.push((await timed(() => repo.mailEventCounts(generated.workspaceId, generated.campaignId)))[1]);
    const ledgerCountsOnly: number[] = [];
    for (let i = 0; i < Math.min(READS, 10); i += 1) ledgerCountsOnly.push((await timed(() => repo.sendCountsFromLedger(generated.workspaceId, generated.campaignId)))[1]);

    const row = (name: string, times: number[]) =>
      `${name.padEnd(52)} | ${String(times.length).padStart(5)} | ${percentile(times, 50).toFixed(1).padStart(9)} | ${percentile(times, 95).toFixed(1).padStart(9)}`;
    console.log(`${'GET /api/campaigns/:id/stats (service)'.padEnd(52)} | reads | p50 ms    | p95 ms`);
    console.log('-'.repeat(84));
    console.log(row('raw recount: events GROUP BY + ledger count (baseline)', recountTimes));
    console.log(row('rollups + send counters (this change)', rollupTimes));
    console.log(row('  of which the rollup read itself', eventCountsOnly));
    console.log(row('  of which the send counters read', sendCountsOnly));
    console.log(row('  of which the bounces and replies read', mailEventsOnly));
    console.log(row('  (the ledger count they replace)', ledgerCountsOnly));
    const p95 = percentile(rollupTimes, 95);
    console.log(`\nspeed-up at p50: ${(percentile(recountTimes, 50) / percentile(rollupTimes, 50)).toFixed(0)}×; rollups p95 ${p95.toFixed(1)} ms (goal < 50 ms) ${p95 < 50 ? 'met' : 'NOT met'}`);
    console.log(`rollups equal the raw recount: ${same ? 'yes' : 'NO'}`);
    console.log(`stats: opens ${JSON.stringify(viaRollups.opens)}, clicks ${JSON.stringify(viaRollups.clicks)}`);

    const explain = async (title: string, query: ReturnType<typeof sql>) => {
      const plan = rowsOf<Record<string, string>>(await db.execute(sql`explain (analyze, buffers) ${query}`));
      console.log(`\nEXPLAIN (ANALYZE, BUFFERS) ${title}:\n${plan.map((r) => `  ${Object.values(r)[0]}`).join('\n')}`);
    };
    await explain(
      'rollup read',
      sql`select type::text as type, link_index, human, machine, unknown, unique_human from tracking_rollups where workspace_id = ${generated.workspaceId} and campaign_id = ${generated.campaignId}`,
    );
    await explain('send counters (campaign_send_counts)', sql`select status::text as status, skip_reason, sum(n)::bigint as n from campaign_send_counts where campaign_id = ${generated.campaignId} and workspace_id = ${generated.workspaceId} group by status, skip_reason`);
    await explain('progress: next due send', sql`select min(due_at) as next_due from campaign_sends where campaign_id = ${generated.campaignId} and status = 'queued'`);
    // The endpoint's other reads that could grow with the campaign: mail events joined to its sends, its unsubscribes.
    await explain('mail events (bounces, replies) of the campaign', mailEventCountsQuery(generated.workspaceId, generated.campaignId));
    await explain(
      'unsubscribes of the campaign',
      sql`select count(distinct lower(email))::int as n from suppressions where workspace_id = ${generated.workspaceId} and reason = 'unsubscribe' and source = ${`campaign:${generated.campaignId}`}`,
    );
    await explain(
      'baseline: send counts over the ledger',
      sql`select count(*) filter (where status = 'sent')::int as sent, count(*) filter (where status = 'failed')::int as failed from campaign_sends where workspace_id = ${generated.workspaceId} and campaign_id = ${generated.campaignId}`,
    );
    if (!same) process.exitCode = 1;
  } finally {
    await drop();
    await database.close().catch(() => undefined);
  }
}

await main();
