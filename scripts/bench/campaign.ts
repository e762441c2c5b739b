/**
 * Campaign throughput: the whole send pipeline (ledger claim with suppression and consent
 * checks, rendering, tracking rewrite, MIME, Gmail client, ledger update) against the
 * Gmail sandbox with pacing switched off, beside a baseline loop that posts the same
 * number of raw messages straight to the same sandbox with the same Gmail client.
 *
 *   npm run bench -- campaign            (sizes from BENCH_RECIPIENTS, default 10000,100000)
 *
 * The sandbox runs in a child process so that its in-memory mail store does not count
 * toward our memory. Prints messages/s and peak heap for each size: the peak should stay
 * flat as the audience grows, because the worker claims in batches and never loads it.
 * The pipeline runs twice per size: with the pacer's limits in memory (as before limits were
 * shared) and in the database (the service's SQL store), to show what sharing costs.
 *
 * Then, for BENCH_WORKER_RECIPIENTS (default 5000; 0 skips), the same campaign sent by one and
 * by two `npm run worker` processes against the PostgreSQL server at BENCH_DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { createServices } from '../../src/app.js';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { createSendWorker } from '../../src/campaigns/send-worker.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { composeMime } from '../../src/gmail/compose-mime.js';
import { createGmailClient } from '../../src/gmail/gmail-client.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createSqlLimitStore } from '../../src/gmail/limit-store.js';
import { MailboxPacer } from '../../src/gmail/pacer.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
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
/** Audience sizes for the runs with worker processes against a PostgreSQL server (0 skips them). */
const workerSizes = (process.env.BENCH_WORKER_RECIPIENTS ?? '5000').split(',').map(Number).filter((n) => n > 0);
const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function peakTracker() {
  let peak = process.memoryUsage().heapUsed;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 50);
  return () => {
    clearInterval(timer);
    return Math.max(peak, process.memoryUsage().heapUsed);
  };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/**
 * The pipeline in this process on in-memory PGlite. `sharedLimits`: the pacer keeps its limits in
 * the database (the service's SQL store: one locked statement per Gmail call) instead of memory.
 */
async function runPipeline(sandboxUrl: string, recipients: number, sharedLimits: boolean) {
  const config = loadConfig({ ...serviceEnv(sandboxUrl), GMAIL_DAILY_BUDGET_WORKSPACE: '10000' });
  const database = await connect({ kind: 'pglite', dir: 'memory://' });
  await database.migrate();
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
  const pacer = new MailboxPacer({ unitsPerMinute: 1e12, ...(sharedLimits ? { store: createSqlLimitStore(database.db) } : {}) });
  const services = createServices({ config, database, logger: createLogger('silent'), google, pacer });
  await seedCampaign(services, database, { recipients, mailboxEmail: 'sender@acme.test', domain: 'bench.test' });

  const stopPeak = peakTracker();
  const started = performance.now();
  // Batches of 500 (the in-process default is 50, sized for fairness between campaigns).
  const worker = createSendWorker({
    repo: createCampaignsRepo(database.db),
    ledger: createSendLedgerRepo(database.db, { serializedEngine: database.kind === 'pglite' }),
    mailboxRepo: createMailboxesRepo(database.db),
    mailboxes: services.mailboxes,
    pacer,
    urls: services.trackingUrls,
    logger: createLogger('silent'),
    batchSize: 500,
  });
  const sent = await worker.runUntilIdle(1_000_000);
  const seconds = (performance.now() - started) / 1000;
  const peak = stopPeak();
  await database.close();
  return { sent, seconds, peak };
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
  return { sent: messages, seconds: (performance.now() - started) / 1000, peak: stopPeak() };
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
    return { sent, seconds, rate: (sent - first!.sent) / seconds };
  } finally {
    await Promise.all(processes.map((p) => (p.child.kill('SIGTERM'), p.exited)));
    await database.close();
    await scratch.drop();
  }
}

const sandbox = await startSandboxProcess();
try {
  console.log(`node ${process.version}, ${sizes.join(' and ')} recipients, sandbox at ${sandbox.url} (separate process)\n`);
  console.log('recipients | pipeline msg/s | baseline msg/s | ratio | pipeline peak heap | baseline peak heap | pipeline, limits in the database: msg/s, ratio');
  for (const size of sizes) {
    const pipeline = await runPipeline(sandbox.url, size, false);
    const shared = await runPipeline(sandbox.url, size, true);
    const baseline = await runBaseline(sandbox.url, size);
    const pRate = pipeline.sent / pipeline.seconds;
    const bRate = baseline.sent / baseline.seconds;
    console.log(
      `${String(size).padStart(10)} | ${pRate.toFixed(0).padStart(14)} | ${bRate.toFixed(0).padStart(14)} | ${(pRate / bRate).toFixed(2).padStart(5)} | ${mb(pipeline.peak).padStart(18)} | ${mb(baseline.peak).padStart(18)} | ${(shared.sent / shared.seconds).toFixed(0)}, ${(shared.sent / shared.seconds / bRate).toFixed(2)}`,
    );
    if (pipeline.sent !== size) console.log(`  ! pipeline sent ${pipeline.sent} of ${size}`);
  }

  if (workerSizes.length > 0) {
    console.log(`\nworker processes (npm run worker) on the PostgreSQL server, beside the baseline loop:`);
    console.log('recipients | 1 worker msg/s | 2 workers msg/s | baseline msg/s | 2 workers / 1 worker');
    for (const size of workerSizes) {
      const one = await runWorkerProcesses(sandbox.url, size, 1);
      const two = await runWorkerProcesses(sandbox.url, size, 2);
      const baseline = await runBaseline(sandbox.url, size);
      const bRate = baseline.sent / baseline.seconds;
      console.log(
        `${String(size).padStart(10)} | ${one.rate.toFixed(0).padStart(14)} | ${two.rate.toFixed(0).padStart(15)} | ${bRate.toFixed(0).padStart(14)} | ${(two.rate / one.rate).toFixed(2).padStart(20)}`,
      );
      for (const run of [one, two]) if (run.sent !== size) console.log(`  ! a worker run sent ${run.sent} of ${size}`);
    }
  }
} finally {
  sandbox.stop();
}
