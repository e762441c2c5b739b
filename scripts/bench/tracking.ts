/**
 * Tracking throughput: the open pixel and the click redirect of the real server
 * (createServices + createHttpServer over a fresh database, a seeded campaign whose sends
 * make valid tokens) beside a bare node:http server answering the same GIF / 302 with the
 * same headers — same process, same run, same load tool (autocannon, in a child process
 * so that it never shares the measured thread), loopback only.
 *
 *   npm run bench -- tracking
 *   BENCH_SECONDS=5 BENCH_CONNECTIONS=10 BENCH_TOKENS=1000 BENCH_DATABASE_URL=postgres://… npm run bench -- tracking
 *
 * Each route is measured with one token (the same pixel fetched again and again) and with
 * BENCH_TOKENS distinct sends. Prints requests/s side by side and the ratio (goal >= 0.8),
 * p99 latency at half our peak rate (goal < 5 ms), the writer's backlog at the end of each
 * peak run and how long it took to catch up, and whether every answered hit was recorded:
 * tracking_events rows after the final flush against the responses autocannon received
 * (requests in flight when a run stops may be answered and recorded without autocannon
 * counting them, so the check is answered <= recorded <= sent).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { sql } from 'drizzle-orm';
import { campaignLinks, campaignSends, campaigns, recipients, workspaces } from '../../src/db/schema.js';
import { bareServer, listen, load as loadRun, startBenchServer } from './bench-server.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const SERVER_URL = process.env.BENCH_DATABASE_URL;
/** Sends (tokens) in the many-tokens runs. */
const DISTINCT = Number(process.env.BENCH_TOKENS ?? 1000);
const TARGET_URL = 'https://shop.example.com/spring-sale?utm_source=newsletter';

const load = (url: string, options: { seconds: number; rate?: number; paths?: string[] }) => loadRun(url, { ...options, connections: CONNECTIONS });

async function main() {
  const app = await startBenchServer(SERVER_URL);
  const { database, services, url: oursUrl } = app;
  const bare = bareServer(TARGET_URL);
  const bareUrl = await listen(bare);

  // A campaign with DISTINCT sends, sent an hour ago (so hits are not "too soon"). Runs use
  // either one send's token (the same pixel fetched again and again) or all of them.
  const { db } = database;
  const [workspace] = await db.insert(workspaces).values({ name: 'Bench' }).returning({ id: workspaces.id });
  const workspaceId = workspace!.id;
  const [campaign] = await db
    .insert(campaigns)
    .values({ workspaceId, name: 'Bench', kind: 'marketing', subject: 'Bench', audience: { contactIds: [] }, status: 'sending' })
    .returning({ id: campaigns.id });
  const campaignId = campaign!.id;
  await db.insert(campaignLinks).values([
    { workspaceId, campaignId, linkIndex: 0, url: TARGET_URL },
    { workspaceId, campaignId, linkIndex: 1, url: 'https://shop.example.com/other' },
    { workspaceId, campaignId, linkIndex: 2, url: 'http://127.0.0.1:1/', honeypot: true },
  ]);
  const sendIds: string[] = [];
  for (let i = 0; i < DISTINCT; i += 1) {
    const email = `reader${i}@bench.test`;
    const [recipient] = await db.insert(recipients).values({ workspaceId, email }).returning({ id: recipients.id });
    const [send] = await db
      .insert(campaignSends)
      .values({ workspaceId, campaignId, step: 0, recipientId: recipient!.id, email, status: 'sent', rfc822MessageId: `${randomUUID()}@bench.test`, sentAt: new Date(Date.now() - 3600_000) })
      .returning({ id: campaignSends.id });
    sendIds.push(send!.id);
  }
  const tracking = services.tracking;
  const pathOf = (url: string) => new URL(url).pathname;
  const pixelPaths = sendIds.map((id) => pathOf(tracking.urls.openPixel(id)));
  const clickPaths = sendIds.map((id) => pathOf(tracking.urls.click(id, 0)));

  const recorded = async () => {
    const result = (await db.execute(sql`select count(*)::int as n from tracking_events where campaign_id = ${campaignId}`)) as unknown as { rows: { n: number }[] };
    return Number(result.rows[0]!.n);
  };
  let answeredByUs = 0;
  let sentToUs = 0;
  let maxBacklog = 0;
  const backlogProbe = setInterval(() => (maxBacklog = Math.max(maxBacklog, tracking.pending())), 50);
  // CPU per request is measured on this process (both servers live here; the load generator
  // does not): less sensitive than requests/s to other work on the machine.
  const measured = async (url: string, paths: string[], options: { seconds: number; rate?: number }) => {
    const before = process.cpuUsage();
    const result = await load(url, { ...options, paths });
    const cpu = process.cpuUsage(before);
    return { ...result, cpuPerRequest: (cpu.user + cpu.system) / Math.max(1, result.answered) };
  };
  const ourRun = async (paths: string[], options: { seconds: number; rate?: number }) => {
    const result = await measured(oursUrl, paths, options);
    answeredByUs += result.answered;
    sentToUs += result.sent;
    return result;
  };
  const bareRun = (paths: string[], options: { seconds: number; rate?: number }) => measured(bareUrl, paths, options);
  /** The writer's backlog after a run, how long it takes to catch up on its own once the load stops, and the CPU that took. */
  const catchUp = async () => {
    const backlog = tracking.pending();
    const started = performance.now();
    const before = process.cpuUsage();
    while (tracking.pending() > 0 && performance.now() - started < 120_000) await new Promise((resolve) => setTimeout(resolve, 20));
    const cpu = process.cpuUsage(before);
    return { backlog, seconds: (performance.now() - started) / 1000, cpuMicros: cpu.user + cpu.system };
  };

  console.log(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`database: ${app.label}`);
  console.log(`autocannon (separate process): ${CONNECTIONS} connections, ${SECONDS} s per run, loopback; user agent: desktop Chrome\n`);

  // Warm-up (JIT, caches): not reported, but its hits must be recorded too.
  for (const paths of [pixelPaths, clickPaths]) {
    await bareRun(paths, { seconds: 2 });
    await ourRun(paths, { seconds: 2 });
    await catchUp();
  }

  const rows: string[] = [];
  const cpuRows: string[] = [];
  const goals: string[] = [];
  for (const [label, all] of [
    ['pixel GET /t/o/:token', pixelPaths],
    ['click GET /t/c/:token', clickPaths],
  ] as const) {
    for (const paths of [all.slice(0, 1), all]) {
      const bareResult = await bareRun(paths, { seconds: SECONDS });
      const ourResult = await ourRun(paths, { seconds: SECONDS });
      const afterPeak = await catchUp();
      const half = ourResult.rps / 2;
      const bareHalf = await bareRun(paths, { seconds: SECONDS, rate: half });
      const ourHalf = await ourRun(paths, { seconds: SECONDS, rate: half });
      await catchUp();
      const ratio = ourResult.rps / bareResult.rps;
      const allIn = (ourResult.cpuPerRequest! * ourResult.answered + afterPeak.cpuMicros) / ourResult.answered;
      cpuRows.push(
        `${label.padEnd(22)} | ${String(paths.length).padStart(6)} | ${bareResult.cpuPerRequest!.toFixed(1).padStart(9)} | ${ourResult.cpuPerRequest!.toFixed(1).padStart(14)} | ${allIn.toFixed(1).padStart(21)} | ${(bareResult.cpuPerRequest! / allIn).toFixed(2).padStart(9)}`,
      );
      rows.push(
        `${label.padEnd(22)} | ${String(paths.length).padStart(6)} | ${bareResult.rps.toFixed(0).padStart(8)} | ${ourResult.rps.toFixed(0).padStart(8)} | ${ratio.toFixed(2).padStart(5)} | ${half.toFixed(0).padStart(8)} | ${`${bareHalf.p99} ms`.padStart(8)} | ${`${ourHalf.p99} ms`.padStart(8)} | ${String(afterPeak.backlog).padStart(7)} in ${afterPeak.seconds.toFixed(1)} s`,
      );
      const name = `${label}, ${paths.length} token${paths.length > 1 ? 's' : ''}`;
      goals.push(`${name}: ratio ${ratio.toFixed(2)} (goal >= 0.8) ${ratio >= 0.8 ? 'met' : 'NOT met'}; p99 at half rate ${ourHalf.p99} ms (goal < 5 ms) ${ourHalf.p99 < 5 ? 'met' : 'NOT met'}`);
      for (const r of [ourResult, ourHalf]) if (r.unexpected || r.errors) goals.push(`  ! ${name}: ${r.unexpected} unexpected statuses, ${r.errors} errors`);
    }
  }
  clearInterval(backlogProbe);

  console.log('route                  | tokens | bare r/s | ours r/s | ratio | half r/s | bare p99 | ours p99 | writer backlog at end of peak run');
  console.log('-'.repeat(125));
  for (const row of rows) console.log(row);
  console.log('\nserver CPU (user+system) per answered request, µs — both servers run in this process, the load generator does not');
  console.log('route                  | tokens | bare/req  | ours/req (run) | ours/hit incl. backlog | bare/ours');
  console.log('-'.repeat(96));
  for (const row of cpuRows) console.log(row);
  console.log('');
  for (const goal of goals) console.log(goal);

  await tracking.flush();
  const count = await recorded();
  const complete = count >= answeredByUs && count <= sentToUs;
  console.log(
    `\nrecorded: ${count} tracking events for ${answeredByUs} answered hits (${sentToUs} sent) — ${complete ? 'every hit recorded' : 'MISSING EVENTS'}; largest writer backlog ${maxBacklog}`,
  );
  console.log(`tracking_events_dropped_total: ${await app.dropped()}`);

  await new Promise<void>((resolve) => bare.close(() => resolve()));
  await app.stop();
  if (!complete) process.exitCode = 1;
}

await main();
