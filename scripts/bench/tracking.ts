/**
 * Tracking throughput: the open pixel and the click redirect of the real server
 * (createServices + createHttpServer over a fresh database, a seeded campaign and send so
 * that tokens are valid) beside a bare node:http server answering the same GIF / 302 with
 * the same headers — same process, same run, same load tool (autocannon, in a child
 * process so it does not share our thread), loopback only.
 *
 *   npm run bench -- tracking
 *   BENCH_SECONDS=5 BENCH_CONNECTIONS=10 BENCH_DATABASE_URL=postgres://… npm run bench -- tracking
 *
 * Prints requests/s side by side and the ratio (goal >= 0.8), p99 latency at half our
 * peak rate (goal < 5 ms), and whether every answered hit was recorded: tracking_events
 * rows after the writer has flushed, against the responses autocannon received (a few
 * requests in flight when a run stops may be answered and recorded but not counted by
 * autocannon, so the check is answered <= recorded <= sent).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { createApp, createHttpServer, createServices } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { campaignLinks, campaignSends, campaigns, recipients, workspaces } from '../../src/db/schema.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
import { PIXEL_GIF } from '../../src/tracking/tracking-handler.js';

const root = path.resolve(import.meta.dirname, '../..');
const AUTOCANNON = path.join(root, 'node_modules/.bin/autocannon');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const SERVER_URL = process.env.BENCH_DATABASE_URL;
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const TARGET_URL = 'https://shop.example.com/spring-sale?utm_source=newsletter';

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  /** Responses received. */
  answered: number;
  /** Requests sent (some may still have been in flight when the run stopped). */
  sent: number;
  /** Responses that were neither the GIF (200) nor the redirect (302). */
  unexpected: number;
  errors: number;
}

/** One autocannon run in a child process; JSON result. */
function load(url: string, options: { seconds: number; rate?: number }): Promise<LoadResult> {
  const args = ['-j', '-n', '-d', String(options.seconds), '-c', String(CONNECTIONS), '-H', `user-agent=${UA}`];
  if (options.rate) args.push('-R', String(Math.round(options.rate)));
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn(AUTOCANNON, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += String(chunk)));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited with ${code}`));
      const r = JSON.parse(out) as {
        duration: number;
        errors: number;
        timeouts: number;
        '2xx': number;
        '3xx': number;
        requests: { total: number; sent: number };
        latency: { p50: number; p99: number };
        statusCodeStats: Record<string, { count: number }>;
      };
      const expected = (r.statusCodeStats['200']?.count ?? 0) + (r.statusCodeStats['302']?.count ?? 0);
      resolve({
        rps: r.requests.total / r.duration,
        p50: r.latency.p50,
        p99: r.latency.p99,
        answered: r.requests.total,
        sent: r.requests.sent,
        unexpected: r.requests.total - expected,
        errors: r.errors + r.timeouts,
      });
    });
  });
}

const listen = (server: Server) =>
  new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));

/** The baseline: node:http answering the same bytes and headers, nothing else. */
function bareServer(): Server {
  const pixelHeaders = { 'Content-Type': 'image/gif', 'Content-Length': '43', 'Cache-Control': 'no-store, private', Expires: '0', 'X-Content-Type-Options': 'nosniff' };
  const redirectHeaders = { Location: TARGET_URL, 'Cache-Control': 'no-store', 'X-Robots-Tag': 'noindex', 'Content-Length': '0' };
  return createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/t/o/')) {
      res.writeHead(200, pixelHeaders);
      res.end(PIXEL_GIF);
    } else if (url.startsWith('/t/c/')) {
      res.writeHead(302, redirectHeaders);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
}

async function serverDatabase(url: string) {
  const name = `inboxtrail_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const target = new URL(url);
  target.pathname = `/${name}`;
  return {
    url: target.toString(),
    drop: async () => {
      const dropper = new pg.Client({ connectionString: url });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

async function main() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-bench-'));
  const server = SERVER_URL ? await serverDatabase(SERVER_URL) : undefined;
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATA_DIR: dataDir,
    DATABASE_URL: server ? server.url : `pglite:${path.join(dataDir, 'pglite')}`,
    JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-0123456789',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 7).toString('base64')}`,
    TRACKING_SECRET: 'v1:bench-tracking-secret-that-is-long-enough-01',
    PUBLIC_BASE_URL: 'http://127.0.0.1:1',
  });
  const database = await connect(config.database);
  await database.migrate();
  const logger = createLogger(config.logLevel);
  const google = await resolveGoogle(config, { sandboxPort: 0 });
  const deps = { config, database, logger, google };
  const services = createServices(deps);
  const ours = createHttpServer(createApp(deps, services), services);
  const bare = bareServer();
  const oursUrl = await listen(ours);
  const bareUrl = await listen(bare);

  // A campaign with one send, sent an hour ago (so hits are not "too soon").
  const { db } = database;
  const [workspace] = await db.insert(workspaces).values({ name: 'Bench' }).returning({ id: workspaces.id });
  const workspaceId = workspace!.id;
  const [campaign] = await db
    .insert(campaigns)
    .values({ workspaceId, name: 'Bench', kind: 'marketing', subject: 'Bench', audience: { contactIds: [] }, status: 'sending' })
    .returning({ id: campaigns.id });
  const campaignId = campaign!.id;
  await db.insert(campaignLinks).values([
    { campaignId, linkIndex: 0, url: TARGET_URL },
    { campaignId, linkIndex: 1, url: 'https://shop.example.com/other' },
    { campaignId, linkIndex: 2, url: 'http://127.0.0.1:1/', honeypot: true },
  ]);
  const [recipient] = await db.insert(recipients).values({ workspaceId, email: 'reader@bench.test' }).returning({ id: recipients.id });
  const [send] = await db
    .insert(campaignSends)
    .values({ workspaceId, campaignId, step: 0, recipientId: recipient!.id, email: 'reader@bench.test', status: 'sent', rfc822MessageId: `${randomUUID()}@bench.test`, sentAt: new Date(Date.now() - 3600_000) })
    .returning({ id: campaignSends.id });
  const tracking = services.tracking;
  const pixelPath = new URL(tracking.urls.openPixel(send!.id)).pathname;
  const clickPath = new URL(tracking.urls.click(send!.id, 0)).pathname;

  const recorded = async () => {
    const result = (await db.execute(sql`select count(*)::int as n from tracking_events where campaign_id = ${campaignId}`)) as unknown as { rows: { n: number }[] };
    return Number(result.rows[0]!.n);
  };
  let answeredByUs = 0;
  let sentToUs = 0;
  let maxBacklog = 0;
  const backlogProbe = setInterval(() => (maxBacklog = Math.max(maxBacklog, tracking.pending())), 50);
  const ourRun = async (pathName: string, options: { seconds: number; rate?: number }) => {
    const result = await load(`${oursUrl}${pathName}`, options);
    answeredByUs += result.answered;
    sentToUs += result.sent;
    return result;
  };
  /** Lets the writer catch up between runs, so each run starts with an empty buffer. */
  const drain = async () => {
    const started = performance.now();
    const backlog = tracking.pending();
    await tracking.flush();
    return { backlog, seconds: (performance.now() - started) / 1000 };
  };

  console.log(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; database: ${server ? 'PostgreSQL server' : 'PGlite (embedded, same thread)'}`);
  console.log(`autocannon: ${CONNECTIONS} connections, ${SECONDS} s per run, loopback\n`);

  // Warm-up (JIT, caches): not reported, but its hits must be recorded too.
  for (const p of [pixelPath, clickPath]) {
    await load(`${bareUrl}${p}`, { seconds: 2 });
    await ourRun(p, { seconds: 2 });
  }
  await drain();

  const rows: string[] = [];
  const goals: string[] = [];
  for (const [label, p] of [
    ['pixel GET /t/o/:token', pixelPath],
    ['click GET /t/c/:token', clickPath],
  ] as const) {
    const bareResult = await load(`${bareUrl}${p}`, { seconds: SECONDS });
    const ourResult = await ourRun(p, { seconds: SECONDS });
    const afterPeak = await drain();
    const half = ourResult.rps / 2;
    const bareHalf = await load(`${bareUrl}${p}`, { seconds: SECONDS, rate: half });
    const ourHalf = await ourRun(p, { seconds: SECONDS, rate: half });
    const afterHalf = await drain();
    const ratio = ourResult.rps / bareResult.rps;
    rows.push(
      `${label.padEnd(22)} | ${bareResult.rps.toFixed(0).padStart(8)} | ${ourResult.rps.toFixed(0).padStart(8)} | ${ratio.toFixed(2).padStart(5)} | ${half.toFixed(0).padStart(7)} | ${`${bareHalf.p99} ms`.padStart(9)} | ${`${ourHalf.p99} ms`.padStart(9)} | ${String(afterPeak.backlog).padStart(7)} in ${afterPeak.seconds.toFixed(1)} s`,
    );
    goals.push(`${label}: ratio ${ratio.toFixed(2)} (goal >= 0.8) ${ratio >= 0.8 ? 'met' : 'NOT met'}; p99 at half rate ${ourHalf.p99} ms (goal < 5 ms) ${ourHalf.p99 < 5 ? 'met' : 'NOT met'}`);
    for (const r of [ourResult, ourHalf]) if (r.unexpected || r.errors) goals.push(`  ! ${label}: ${r.unexpected} unexpected statuses, ${r.errors} errors`);
    void afterHalf;
  }
  clearInterval(backlogProbe);

  console.log('route                  | bare r/s | ours r/s | ratio | half r/s | bare p99 | ours p99 | backlog after peak (written in)');
  console.log('-'.repeat(118));
  for (const row of rows) console.log(row);
  console.log('');
  for (const goal of goals) console.log(goal);

  await tracking.flush();
  const count = await recorded();
  const complete = count >= answeredByUs && count <= sentToUs;
  console.log(
    `recorded: ${count} tracking events for ${answeredByUs} answered hits (${sentToUs} sent) — ${complete ? 'every hit recorded' : 'MISSING EVENTS'}; largest backlog ${maxBacklog}`,
  );
  const metrics = await services.metrics.registry.getSingleMetricAsString('tracking_events_dropped_total');
  const dropped = [...metrics.matchAll(/tracking_events_dropped_total\{[^}]*\} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  console.log(`tracking_events_dropped_total: ${dropped}`);

  await new Promise<void>((resolve) => ours.close(() => resolve()));
  await new Promise<void>((resolve) => bare.close(() => resolve()));
  await tracking.close();
  await google.sandbox?.close();
  await database.close();
  await server?.drop();
  rmSync(dataDir, { recursive: true, force: true });
  if (!complete) process.exitCode = 1;
}

await main();
