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
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
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
import { MailboxPacer } from '../../src/gmail/pacer.js';
import { createLogger } from '../../src/logger.js';

const root = path.resolve(import.meta.dirname, '../..');
const sizes = (process.env.BENCH_RECIPIENTS ?? '10000,100000').split(',').map(Number);
const CLIENT_ID = 'bench-client';
const CLIENT_SECRET = 'bench-secret';

async function startSandboxProcess(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(path.join(root, 'node_modules/.bin/tsx'), ['scripts/sandbox.ts'], {
    cwd: root,
    env: { ...process.env, SANDBOX_PORT: '0', SANDBOX_AUTO_APPROVE: '1', SANDBOX_CLIENT_ID: CLIENT_ID, SANDBOX_CLIENT_SECRET: CLIENT_SECRET },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += String(chunk);
      const match = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', () => reject(new Error('sandbox exited')));
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

function peakTracker() {
  let peak = process.memoryUsage().heapUsed;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 50);
  return () => {
    clearInterval(timer);
    return Math.max(peak, process.memoryUsage().heapUsed);
  };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

async function runPipeline(sandboxUrl: string, recipients: number) {
  const config = loadConfig({
    NODE_ENV: 'test',
    JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-000000',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 3).toString('base64')}`,
    TRACKING_SECRET: 'v1:bench-tracking-secret-long-enough-000000',
    PUBLIC_BASE_URL: 'http://127.0.0.1:1',
    GOOGLE_CLIENT_ID: CLIENT_ID,
    GOOGLE_CLIENT_SECRET: CLIENT_SECRET,
    GOOGLE_REDIRECT_URI: 'http://127.0.0.1:1/api/gmail/callback',
    GOOGLE_API_ROOT_URL: sandboxUrl,
    GOOGLE_OAUTH_AUTHORIZE_URL: `${sandboxUrl}/o/oauth2/v2/auth`,
    GOOGLE_OAUTH_TOKEN_URL: `${sandboxUrl}/token`,
    GOOGLE_OAUTH_REVOKE_URL: `${sandboxUrl}/revoke`,
    GOOGLE_CERTS_URL: `${sandboxUrl}/oauth2/v1/certs`,
    GMAIL_DAILY_BUDGET_WORKSPACE: '10000',
  });
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
  const pacer = new MailboxPacer({ unitsPerMinute: 1e12 });
  const services = createServices({ config, database, logger: createLogger('silent'), google, pacer });

  const { token: _token, workspace, user } = await services.auth.signup({ email: 'bench@acme.test', password: 'bench password 123', workspaceName: 'Bench' });
  const auth = { userId: user.id, workspaceId: workspace.id, role: 'owner' as const };
  await services.auth.updateWorkspace(auth, { postalAddress: '1 Bench Street, Testville' });
  const start = services.mailboxes.startConnection(auth, { sync: false, loginHint: 'sender@acme.test' });
  const consent = await fetch(start.url, { redirect: 'manual' });
  const callback = new URL(consent.headers.get('location')!);
  const mailbox = await services.mailboxes.completeConnection({ code: callback.searchParams.get('code')!, state: callback.searchParams.get('state')! });
  await database.db.execute(sql`update mailboxes set daily_budget = ${recipients + 10} where id = ${mailbox.id}::uuid`);

  await database.db.execute(sql`
    insert into contacts (workspace_id, email, first_name, attributes)
    select ${workspace.id}::uuid, 'r' || g || '@bench.test', 'Name' || g, jsonb_build_object('plan', case when g % 2 = 0 then 'pro' else 'free' end)
    from generate_series(1, ${recipients}) g`);
  await database.db.execute(sql`
    insert into consents (workspace_id, contact_id, status, source, policy_version, actor)
    select workspace_id, id, 'opted_in', 'bench', '2026-11-01', 'system' from contacts where workspace_id = ${workspace.id}::uuid`);
  const campaign = await services.campaigns.create(auth, {
    name: 'bench',
    kind: 'marketing',
    mailboxId: mailbox.id,
    subject: 'Hello {{firstName | "there"}}',
    html: '<p>Hi {{firstName}}, read <a href="https://acme.test/post">the post</a> about {{plan}}.</p>',
    audience: { segment: { all: [{ field: 'email', op: 'contains', value: '@bench.test' }] } },
    steps: [],
  });
  await services.campaigns.launch(auth, campaign.id, {});

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
  const consent = await fetch(client.buildAuthorizeUrl({ scopes: ['openid', 'email', 'https://www.googleapis.com/auth/gmail.send'], state: 'x', loginHint: 'baseline@acme.test' }), {
    redirect: 'manual',
  });
  const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
  const granted = await client.exchangeCode(code);
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

const sandbox = await startSandboxProcess();
try {
  console.log(`node ${process.version}, ${sizes.join(' and ')} recipients, sandbox at ${sandbox.url} (separate process)\n`);
  console.log('recipients | pipeline msg/s | baseline msg/s | ratio | pipeline peak heap | baseline peak heap');
  for (const size of sizes) {
    const pipeline = await runPipeline(sandbox.url, size);
    const baseline = await runBaseline(sandbox.url, size);
    const pRate = pipeline.sent / pipeline.seconds;
    const bRate = baseline.sent / baseline.seconds;
    console.log(
      `${String(size).padStart(10)} | ${pRate.toFixed(0).padStart(14)} | ${bRate.toFixed(0).padStart(14)} | ${(pRate / bRate).toFixed(2).padStart(5)} | ${mb(pipeline.peak).padStart(18)} | ${mb(baseline.peak).padStart(18)}`,
    );
    if (pipeline.sent !== size) console.log(`  ! pipeline sent ${pipeline.sent} of ${size}`);
  }
} finally {
  sandbox.stop();
}
