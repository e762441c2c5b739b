/**
 * Campaign throughput: the whole send pipeline (pacer with its limits in the database, ledger
 * claim with suppression and consent checks, rendering, tracking rewrite, MIME, Gmail
 * client, ledger update) against the Gmail sandbox with pacing switched off, beside a
 * baseline loop that posts the same number of raw messages straight to the same sandbox with
 * the same Gmail client.
 *
 *   npm run bench -- campaign                        (BENCH_RECIPIENTS, default 10000,100000)
 *   BENCH_TARGETS=server BENCH_DATABASE_URL=postgres://… npm run bench -- campaign
 *   BENCH_RECIPIENTS=1000000 BENCH_SEND_SLICE=20000 npm run bench -- campaign   (launch it all, send a slice)
 *   BENCH_PGSS=1 BENCH_TARGETS=pglite npm run bench -- campaign   (and what the engine's own statements cost: pg_stat_statements)
 *   BENCH_STEPS=1,2 BENCH_RECIPIENTS=10000 BENCH_WORKER_RECIPIENTS=0 npm run bench -- campaign   (a single step, then a two-step sequence)
 *
 * Targets (BENCH_TARGETS, default pglite,server): in-memory PGlite, and a database of its own
 * on the server at BENCH_DATABASE_URL (default the local one; created and dropped). The
 * sandbox runs in a child process so that neither its CPU nor its in-memory mail store count.
 * Printed per size and target: launch time (contacts, consents, launch), msg/s and the ratio
 * to the baseline, this process's CPU per message sent (`process.cpuUsage`; with PGlite the
 * database runs in this process and counts, with the server it does not) and the pipeline's
 * own share of it (its CPU per message minus the baseline loop's, which composes and posts the
 * same message with the same libraries: the part the pipeline adds), and peak heap and
 * RSS from seeding through the send (sampled every 50 ms). For memory figures run one size per
 * process: RSS does not shrink back after a run. BENCH_MEMORY_LIMITS=1 also runs the pipeline
 * with the pacer's limits in memory (one process, no sharing).
 *
 * BENCH_STEPS (default 1; a list runs each in turn, beside the same baseline): the campaign is
 * a sequence of that many steps, each later step due BENCH_STEP_AFTER_DAYS (default 0: at once)
 * after the recipient's previous one went out, so the run sends recipients × steps messages
 * and measures what a later step adds: the claim's re-checks of a later step (replies, the
 * out-of-office hold), the thread of the previous step, and the sent record that queues the
 * next step (on a server, in a transaction after the recipients' address locks: holdOrderLock).
 * Such a row is labelled `<target>, N steps`, and followed by each step's own msg/s (its
 * messages over the span of their `sent_at`).
 *
 * Then, for BENCH_WORKER_RECIPIENTS (default 5000; 0 skips), the same campaign sent by one and
 * by two `npm run worker` processes against the PostgreSQL server at BENCH_DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped),
 * with the MultiXacts the cluster used per 1,000 messages (shared row locks: the gate's share
 * lock on the campaign row when claims of several workers overlap).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { createServices } from '../../src/app.js';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { createSendWorker } from '../../src/campaigns/send-worker.js';
import { loadConfig } from '../../src/config.js';
import { connect, type Db } from '../../src/db/connect.js';
import { composeMime } from '../../src/gmail/compose-mime.js';
import { createGmailClient } from '../../src/gmail/gmail-client.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createSqlLimitStore } from '../../src/gmail/limit-store.js';
import { MailboxPacer } from '../../src/gmail/pacer.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
import { openBenchDatabase, SERVER_URL, statementStats, targets, type TargetName } from './audience-data.js';
import { machine, printMethodTimes, printStatementStats, procCpuMicros, startStatementStats, timeMethods, type MethodTimes } from './common.js';
import {
  SANDBOX_CLIENT_ID as CLIENT_ID,
  SANDBOX_CLIENT_SECRET as CLIENT_SECRET,
  createScratchDatabase,
  seedCampaign,
  serviceEnv,
  spawnService,
  startSandboxProcess,
} from './fixture.js';

const sizes = (process.env.BENCH_RECIPIENTS ?? '10000,100000').split(',').map(Number);
/** Send at most this many of each campaign (0: all). For the million: launch it all, time a slice of the send. */
const sendSlice = Number(process.env.BENCH_SEND_SLICE ?? '0');
/** The baseline loop's message count (default: as many as the pipeline sends). Its rate does not depend on the audience. */
const baselineMessages = Number(process.env.BENCH_BASELINE_MESSAGES ?? '0');
/** Also run the pipeline with the pacer's limits in memory (one process, no sharing): BENCH_MEMORY_LIMITS=1. */
const memoryLimitsToo = process.env.BENCH_MEMORY_LIMITS === '1';
/** Audience sizes for the runs with worker processes against a PostgreSQL server (0 skips them). */
const workerSizes = (process.env.BENCH_WORKER_RECIPIENTS ?? '5000').split(',').map(Number).filter((n) => n > 0);
const serverUrl = SERVER_URL;
/** Steps of the campaign's sequence, one run each (BENCH_STEPS=1,2); a later step is due BENCH_STEP_AFTER_DAYS after the one before. */
const stepCounts = (process.env.BENCH_STEPS ?? '1').split(',').map(Number);
const stepAfterDays = Number(process.env.BENCH_STEP_AFTER_DAYS ?? '0');
if (stepCounts.some((n) => !Number.isInteger(n) || n < 1 || n > 11)) throw new Error('BENCH_STEPS: step counts from 1 to 11');

/**
 * BENCH_EXPLAIN_CLAIM=1: after the PGlite run, the generic plan PGlite keeps for the send claim
 * (EXPLAIN (GENERIC_PLAN), PostgreSQL 16+); after a server run, EXPLAIN (ANALYZE, BUFFERS) of the
 * claim as the server plans it (its values written in), in a transaction rolled back. Of the
 * campaign's last step: with BENCH_STEPS, a later step's re-checks.
 */
const explainClaim = process.env.BENCH_EXPLAIN_CLAIM === '1';
/** BENCH_PHASES=1: wall time per repository and limit-store method the pipeline called (where a message's time goes). */
const phases = process.env.BENCH_PHASES === '1';

/**
 * The claim statement of a round of four, as the gate builds it (captured, not run), explained
 * as a generic plan over the ledger the run just sent: the plan every round uses
 * (`GENERIC_PLAN`, plan-hints.ts), which must stay index probes as the audience grows.
 */
async function printClaimPlan(db: Db, kind: 'pglite' | 'postgres', seeded: { workspaceId: string; campaignId: string; mailboxId: string; mailboxEmail: string }) {
  const campaign = (await createCampaignsRepo(db).findById(seeded.workspaceId, seeded.campaignId))!;
  const rows = (await db.execute(sql`
    select id, step, contact_id, recipient_id, email, rfc822_message_id from campaign_sends
    where campaign_id = ${seeded.campaignId}::uuid and step = ${campaign.steps.length} limit 4`)) as unknown as {
    rows: { id: string; step: number; contact_id: string; recipient_id: string; email: string; rfc822_message_id: string }[];
  };
  let captured: SQL | undefined;
  const capture = { execute: async (query: SQL) => ((captured = query), { rows: [] }) } as unknown as Db;
  await createSendLedgerRepo(capture, { serializedEngine: true }).claimMany(
    rows.rows.map((r) => ({
      campaign,
      mailbox: { id: seeded.mailboxId, email: seeded.mailboxEmail },
      candidate: { id: r.id, campaignId: campaign.id, step: Number(r.step), contactId: r.contact_id, recipientId: r.recipient_id, email: r.email, rfc822MessageId: r.rfc822_message_id, attempts: 0 },
      owner: 'explain',
      messageRowId: randomUUID(),
      subject: 'explain',
      now: new Date(),
      leaseUntil: new Date(),
    })),
  );
  const query = new PgDialect().sqlToQuery(captured!);
  if (kind === 'postgres') {
    const literal = (value: unknown) => (value === null || value === undefined ? 'null' : `'${String(value).replace(/'/g, "''")}'`);
    const text = query.sql.replace(/\$(\d+)/g, (_m, i: string) => literal(query.params[Number(i) - 1]));
    let lines: string[] = [];
    await db
      .transaction(async (tx) => {
        for (let i = 0; i < 2; i += 1) {
          const result = (await tx.execute(sql.raw(`explain (analyze, buffers) ${text}`))) as unknown as { rows: { 'QUERY PLAN': string }[] };
          lines = result.rows.map((r) => r['QUERY PLAN']);
        }
        throw new Error('rollback');
      })
      .catch((error: unknown) => {
        if ((error as Error).message !== 'rollback') throw error;
      });
    console.log(`  the claim of 4 sends of step ${campaign.steps.length + 1} (server, custom plan, second run):\n${lines.map((l) => `    ${l}`).join('\n')}`);
    return;
  }
  const text = query.sql;
  // A simple-protocol query: the extended one would ask for the $n parameters a generic plan leaves open.
  const client = (db as unknown as { $client: { exec(query: string): Promise<{ rows: { 'QUERY PLAN': string }[] }[]> } }).$client;
  const [plan] = await client.exec(`explain (generic_plan) ${text}`);
  console.log(`  the claim's generic plan (PGlite):\n${plan!.rows.map((r) => `    ${r['QUERY PLAN']}`).join('\n')}`);
}

/** Peak heap and RSS of this process, sampled every 50 ms. */
function peakTracker() {
  const peak = { heap: process.memoryUsage().heapUsed, rss: process.memoryUsage.rss() };
  const sample = () => {
    peak.heap = Math.max(peak.heap, process.memoryUsage().heapUsed);
    peak.rss = Math.max(peak.rss, process.memoryUsage.rss());
  };
  const timer = setInterval(sample, 50);
  return () => {
    clearInterval(timer);
    sample();
    return peak;
  };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};
/**
 * CPU ms of this process's main thread alone (Linux: /proc, 10 ms ticks), or NaN elsewhere. The
 * rest of the process's CPU is PGlite's thread (pglite-thread.ts) plus V8's and libuv's helpers.
 */
function mainThreadCpuMs(): number {
  return (procCpuMicros(`self/task/${process.pid}`) ?? Number.NaN) / 1000;
}

/**
 * The pipeline in this process, on in-memory PGlite or a database of its own on the server
 * (`target`). The pacer keeps its limits where the service keeps them — the database (one
 * `mailbox_take_units` per Gmail call) — unless `memoryLimits`. Measured: msg/s of the send,
 * this process's CPU per message sent (the sandbox is another process; with PGlite the
 * database runs in this process and counts, with the server it does not), and peak heap and
 * RSS from the seeding and launch through the send.
 */
async function runPipeline(sandboxUrl: string, target: TargetName, recipients: number, memoryLimits: boolean, steps: number) {
  // The mailbox's budget is seedCampaign's (as many as there are recipients).
  const config = loadConfig(serviceEnv(sandboxUrl));
  // The service's default pool (10): the lanes, the pacer and the gate each hold a connection for a
  // moment. No statement timeout: seeding a million contacts is one long statement.
  const opened = await openBenchDatabase(target, { poolSize: 10, statementTimeoutMs: 3_600_000 });
  if (!opened) return undefined;
  const { database } = opened;
  const google = {
    settings: {
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUri: config.google.redirectUri!,
      endpoints: {
        apiRootUrl: sandboxUrl,
        authorizeUrl: config.google.authorizeUrl!,
        tokenUrl: config.google.tokenUrl!,
        revokeUrl: config.google.revokeUrl!,
        certsUrl: config.google.certsUrl!,
      },
    },
    pushAudience: 'bench',
  };
  // Pacing off: quota far beyond Gmail's, so the pipeline itself is what is measured.
  const times: MethodTimes = new Map();
  const timed = <T extends object>(target: T, label: string) => (phases ? timeMethods(target, label, times) : target);
  const pacer = new MailboxPacer({ unitsPerMinute: 1e12, ...(memoryLimits ? {} : { store: timed(createSqlLimitStore(database.db), 'limits') }) });
  const services = createServices({ config, database, logger: createLogger('silent'), google, pacer });
  const stopPeak = peakTracker();
  const launchStarted = performance.now();
  const seeded = await seedCampaign(services, database, { recipients, mailboxEmail: 'sender@acme.test', domain: 'bench.test', steps, afterDays: stepAfterDays });
  const launchSeconds = (performance.now() - launchStarted) / 1000;

  const counting = statementStats && (await startStatementStats(database.db));
  const cpuBefore = process.cpuUsage();
  const mainBefore = mainThreadCpuMs();
  const started = performance.now();
  // Batches of 500 (the in-process default is 50, sized for fairness between campaigns).
  const batchSize = 500;
  const worker = createSendWorker({
    repo: timed(createCampaignsRepo(database.db), 'campaigns'),
    ledger: timed(createSendLedgerRepo(database.db, { serializedEngine: database.kind === 'pglite' }), 'ledger'),
    mailboxRepo: createMailboxesRepo(database.db),
    mailboxes: timed(services.mailboxes, 'mailboxes'),
    pacer,
    urls: services.trackingUrls,
    sentCopies: services.sentCopies,
    logger: createLogger('silent'),
    batchSize,
  });
  const sent = await worker.runUntilIdle(sendSlice > 0 ? Math.ceil(sendSlice / batchSize) : 1_000_000);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuMs(cpuBefore);
  const mainCpu = mainThreadCpuMs() - mainBefore;
  const peak = stopPeak();
  if (phases) {
    console.log(`  ${target}, ${recipients}: wall time per method (${(seconds * 1000).toFixed(0)} ms in all, ${sent} messages)`);
    printMethodTimes(times, { name: 'message', count: sent });
  }
  if (counting) {
    console.log(`  ${target}, ${recipients}: the engine's statements (pg_stat_statements, ${sent} messages)`);
    await printStatementStats(database.db, { name: 'msg', count: sent });
  }
  if (explainClaim) await printClaimPlan(database.db, database.kind, seeded);
  const perStep = steps > 1 ? await stepRates(database.db, seeded.campaignId) : [];
  await opened.close();
  return { sent, seconds, launchSeconds, cpuPerMessageMs: cpu / Math.max(1, sent), mainThreadPerMessageMs: mainCpu / Math.max(1, sent), peak, perStep };
}

/**
 * Each step's messages sent and their rate over the span of their `sent_at` (first to last
 * Gmail answer of the step). The worker sends the steps one after the other (a batch takes the
 * earliest due first, and a later step is due only once its previous one went out).
 */
async function stepRates(db: Db, campaignId: string) {
  const result = (await db.execute(sql`
    select step, count(*)::int as n, extract(epoch from max(sent_at) - min(sent_at))::float8 as span
    from campaign_sends where campaign_id = ${campaignId}::uuid and status = 'sent' group by step order by step`)) as unknown as { rows: { step: number; n: number; span: number }[] };
  return result.rows.map((r) => ({ step: Number(r.step), sent: Number(r.n), rate: Number(r.n) / Math.max(Number(r.span), 1e-3) }));
}

/** The same number of messages, composed the same way, posted straight to the sandbox. */
async function runBaseline(sandboxUrl: string, messages: number) {
  const pacer = new MailboxPacer({ unitsPerMinute: 1e12 });
  const client = createGmailClient(
    {
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUri: 'http://127.0.0.1:1/api/gmail/callback',
      endpoints: {
        apiRootUrl: sandboxUrl,
        authorizeUrl: `${sandboxUrl}/o/oauth2/v2/auth`,
        tokenUrl: `${sandboxUrl}/token`,
        revokeUrl: `${sandboxUrl}/revoke`,
        certsUrl: `${sandboxUrl}/oauth2/v1/certs`,
      },
    },
    pacer,
  );
  const verifier = randomBytes(32).toString('base64url');
  const codeChallenge = createHash('sha256').update(verifier).digest('base64url');
  const consent = await fetch(client.buildAuthorizeUrl({ scopes: ['openid', 'email', 'https://www.googleapis.com/auth/gmail.send'], state: 'x', codeChallenge, loginHint: 'baseline@acme.test' }), {
    redirect: 'manual',
  });
  const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
  const granted = await client.exchangeCode(code, verifier);
  const api = client.forMailbox('baseline', { refreshToken: granted.refreshToken!, accessToken: granted.accessToken }, () => undefined);
  const stopPeak = peakTracker();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  for (let i = 1; i <= messages; i += 1) {
    const raw = await composeMime({
      from: 'baseline@acme.test',
      to: [`r${i}@bench.test`],
      subject: `Hello Name${i}`,
      html: `<p>Hi Name${i}, read <a href="https://acme.test/post">the post</a>.</p>`,
      text: `Hi Name${i}`,
      messageId: `baseline-${i}@acme.test`,
    });
    await api.sendRaw(raw);
  }
  const seconds = (performance.now() - started) / 1000;
  return { sent: messages, seconds, cpuPerMessageMs: cpuMs(cpuBefore) / messages, peak: stopPeak() };
}

/**
 * The cluster's next MultiXact id, after a checkpoint (pg_control_checkpoint is read from the
 * last one). Row locks shared by several transactions at once (the gate's share lock on the
 * campaign row, two workers claiming together) each take a MultiXact: their count per message
 * says what several workers cost in MultiXact space (vacuumed like transaction ids). Cluster-wide:
 * anything else running on the server counts too.
 */
async function nextMultixact(db: Db): Promise<number> {
  await db.execute(sql`checkpoint`);
  const result = (await db.execute(sql`select next_multixact_id::text as id from pg_control_checkpoint()`)) as unknown as { rows: { id: string }[] };
  return Number(result.rows[0]!.id);
}

/**
 * `workers` × `npm run worker` processes (as deployed: default batch size, the 1 s send tick,
 * limits shared through the server) on a fresh database on the PostgreSQL server, quota and
 * pace raised out of the way. Timed from the first message recorded sent to the last, so that
 * process start-up (tsx compiling) is not counted.
 */
async function runWorkerProcesses(sandboxUrl: string, recipients: number, workers: number) {
  const scratch = await createScratchDatabase(serverUrl, 'inboxtrail_bench');
  const env = { ...serviceEnv(sandboxUrl), DATABASE_URL: scratch.url };
  const database = await connect({ kind: 'postgres', url: scratch.url, poolSize: 2 });
  const processes: ReturnType<typeof spawnService>[] = [];
  try {
    await database.migrate();
    const config = loadConfig(env);
    const services = createServices({ config, database, logger: createLogger('silent'), google: await resolveGoogle(config) });
    const { campaignId } = await seedCampaign(services, database, { recipients, mailboxEmail: `workers${workers}@acme.test`, domain: 'bench.test' });
    const sentCount = async () => {
      const result = (await database.db.execute(sql`select count(*)::int as n from campaign_sends where campaign_id = ${campaignId}::uuid and status = 'sent'`)) as unknown as {
        rows: { n: number }[];
      };
      return Number(result.rows[0]!.n);
    };
    const multixactsBefore = await nextMultixact(database.db);
    const workerEnv = { ...env, GMAIL_QUOTA_UNITS_PER_MINUTE: '1000000000', GMAIL_SENDS_PER_MINUTE: '1000000', GMAIL_SYNC_POLL_SECONDS: '0', LOG_LEVEL: 'warn' };
    for (let i = 0; i < workers; i++) processes.push(spawnService('scripts/worker.ts', workerEnv));
    let first: { at: number; sent: number } | undefined;
    let sent = 0;
    const deadline = performance.now() + 30 * 60_000;
    while (sent < recipients && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      sent = await sentCount();
      if (!first && sent > 0) first = { at: performance.now(), sent };
    }
    const seconds = (performance.now() - first!.at) / 1000;
    return { sent, seconds, rate: (sent - first!.sent) / seconds, multixacts: (await nextMultixact(database.db)) - multixactsBefore };
  } finally {
    await Promise.all(processes.map((p) => (p.child.kill('SIGTERM'), p.exited)));
    await database.close();
    await scratch.drop();
  }
}

const sandbox = await startSandboxProcess();
try {
  console.log(`${machine()}; ${sizes.join(' and ')} recipients${sendSlice > 0 ? `, the first ${sendSlice} of each sent` : ''}${baselineMessages > 0 ? `, baseline loop of ${baselineMessages} messages` : ''}; targets ${targets.join(', ')}; sandbox at ${sandbox.url} (separate process)\n`);
  console.log('target | recipients | launch s | pipeline msg/s | baseline msg/s | ratio | CPU/msg pipeline, baseline (the pipeline\'s own: the difference; the pipeline\'s main thread alone) | peak heap pipeline, baseline | peak RSS pipeline, baseline');
  for (const size of sizes) {
    const baseline = await runBaseline(sandbox.url, baselineMessages > 0 ? baselineMessages : sendSlice > 0 ? Math.min(size, sendSlice) : size);
    const bRate = baseline.sent / baseline.seconds;
    for (const target of targets) {
      for (const [memoryLimits, steps] of (memoryLimitsToo ? [false, true] : [false]).flatMap((m) => stepCounts.map((n) => [m, n] as const))) {
        const pipeline = await runPipeline(sandbox.url, target, size, memoryLimits, steps);
        if (!pipeline) continue;
        const pRate = pipeline.sent / pipeline.seconds;
        const label = `${target}${steps > 1 ? `, ${steps} steps` : ''}${memoryLimits ? ' (limits in memory)' : ''}`;
        console.log(
          `${label} | ${size} | ${pipeline.launchSeconds.toFixed(1)} | ${pRate.toFixed(0)} | ${bRate.toFixed(0)} | ${(pRate / bRate).toFixed(2)} | ${pipeline.cpuPerMessageMs.toFixed(2)} ms, ${baseline.cpuPerMessageMs.toFixed(2)} ms (${(pipeline.cpuPerMessageMs - baseline.cpuPerMessageMs).toFixed(2)} ms; main thread ${pipeline.mainThreadPerMessageMs.toFixed(2)} ms) | ${mb(pipeline.peak.heap)}, ${mb(baseline.peak.heap)} | ${mb(pipeline.peak.rss)}, ${mb(baseline.peak.rss)}   (${machine().replace(/^.*load/, 'load')})`,
        );
        if (pipeline.perStep.length > 0) console.log(`  per step: ${pipeline.perStep.map((s) => `step ${s.step + 1} ${s.sent} sent, ${s.rate.toFixed(0)} msg/s`).join('; ')}`);
        const expected = sendSlice > 0 ? Math.min(size * steps, sendSlice) : size * steps;
        if (pipeline.sent < expected) console.log(`  ! pipeline sent ${pipeline.sent} of ${expected}`);
      }
    }
  }

  if (workerSizes.length > 0) {
    console.log(`\nworker processes (npm run worker) on the PostgreSQL server, beside the baseline loop:`);
    console.log('recipients | 1 worker msg/s | 2 workers msg/s | baseline msg/s | 2 workers / 1 worker | MultiXacts per 1,000 messages, 1 / 2 workers');
    for (const size of workerSizes) {
      const one = await runWorkerProcesses(sandbox.url, size, 1);
      const two = await runWorkerProcesses(sandbox.url, size, 2);
      const baseline = await runBaseline(sandbox.url, size);
      const bRate = baseline.sent / baseline.seconds;
      console.log(
        `${String(size).padStart(10)} | ${one.rate.toFixed(0).padStart(14)} | ${two.rate.toFixed(0).padStart(15)} | ${bRate.toFixed(0).padStart(14)} | ${(two.rate / one.rate).toFixed(2).padStart(20)} | ${((one.multixacts * 1000) / size).toFixed(0)} / ${((two.multixacts * 1000) / size).toFixed(0)}`,
      );
      for (const run of [one, two]) if (run.sent !== size) console.log(`  ! a worker run sent ${run.sent} of ${size}`);
    }
  }
} finally {
  sandbox.stop();
}
