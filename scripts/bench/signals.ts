/**
 * Signals in seconds: the time from the Gmail sandbox receiving a recipient's reply (or a
 * bounce notice) in the sender's mailbox to that reply being counted in the campaign's
 * stats (`GET /api/campaigns/:id/stats`, over HTTP), with push (watch → sandbox Pub/Sub →
 * POST /webhooks/gmail → incremental sync) beside the baseline without push (polling only,
 * every BENCH_POLL_SECONDS, default 5, instead of the default 300 to keep the run short).
 *
 *   npm run bench -- signals       (BENCH_SAMPLES=20 replies with push; a quarter of that for bounces and for polling)
 *
 * Goals (issue 10): p95 < 5 s with push; < poll interval + 5 s without.
 * Everything runs in this process (app, jobs, sandbox, embedded PGlite), as `npm start` does.
 */
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { createMemoryMailer } from '../../src/auth/account-mail.js';
import { createServices } from '../../src/app.js';
import { createApp, createHttpServer } from '../../src/http/express-app.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { benchAccount, benchMailbox } from './bench-account.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20);
const POLL_SECONDS = Number(process.env.BENCH_POLL_SECONDS ?? 5);
const SENDER = 'sender@acme.test';

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const describe = (values: number[]) =>
  values.length === 0 ? 'no samples' : `n=${values.length}  p50 ${(percentile(values, 50) / 1000).toFixed(2)} s  p95 ${(percentile(values, 95) / 1000).toFixed(2)} s  max ${(Math.max(...values) / 1000).toFixed(2)} s`;

async function measure(mode: 'push' | 'poll', replies: number, bounces: number) {
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-000000',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 5).toString('base64')}`,
    TRACKING_SECRET: 'v1:bench-tracking-secret-long-enough-000000',
    SUPPRESSION_HASH_KEY: 'bench-suppression-hash-key-long-enough-000000',
    PUBLIC_BASE_URL: 'http://127.0.0.1:1',
    GMAIL_SYNC_POLL_SECONDS: String(mode === 'push' ? 300 : POLL_SECONDS),
  });
  const database = await connect({ kind: 'pglite', dir: 'memory://' });
  await database.migrate();
  const google = await resolveGoogle(config, { autoApprove: true, sandboxPort: 0 });
  const sandbox = google.sandbox!;
  const logger = createLogger('silent');
  const deps = { config, database, logger, google, accountMailer: createMemoryMailer() };
  const services = createServices(deps);
  const server = createHttpServer(createApp(deps, services), services).listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // As main.ts does in sandbox mode; the polling baseline has no subscription, so nothing is pushed.
  if (mode === 'push') sandbox.control.addPushSubscription({ topicName: google.pushTopic!, endpoint: `${base}/webhooks/gmail`, audience: google.pushAudience });
  const jobs = startJobs({ services, config, logger, pushTopic: google.pushTopic });

  try {
    const { token, auth } = await benchAccount(services);
    const api = async (method: string, path: string, json?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(json ? { 'content-type': 'application/json' } : {}) },
        body: json ? JSON.stringify(json) : undefined,
      });
      return res.json() as Promise<any>;
    };
    const mailbox = await benchMailbox(services, auth, { sync: true, loginHint: SENDER });

    const recipients = Array.from({ length: replies + bounces }, (_, i) => `r${i}@contoso.test`);
    const contactIds: string[] = [];
    for (const email of recipients) {
      sandbox.control.createMailbox({ email });
      contactIds.push((await api('POST', '/api/contacts', { email })).id);
    }
    const campaign = await api('POST', '/api/campaigns', { name: 'bench', kind: 'transactional', mailboxId: mailbox.id, subject: 'Signals bench', text: 'Hello', contactIds });
    await api('POST', `/api/campaigns/${campaign.id}/launch`, {});
    while ((await api('GET', `/api/campaigns/${campaign.id}`)).progress.sent < recipients.length) await new Promise((r) => setTimeout(r, 100));
    // The first sync of a new mailbox is a full one (the poller does it within 30 s of connecting); measure the steady state after it.
    await services.sync.syncMailbox(mailbox.id);

    const waitFor = async (field: 'replied' | 'bounced', value: number, started: number) => {
      while ((await api('GET', `/api/campaigns/${campaign.id}/stats`))[field] < value) {
        if (performance.now() - started > (POLL_SECONDS + 60) * 1000) throw new Error(`${field} never reached ${value}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      return performance.now() - started;
    };
    const replyTimes: number[] = [];
    for (let i = 0; i < replies; i += 1) {
      const email = recipients[i]!;
      const got = sandbox.control.listMessages(email).find((m) => m.subject === 'Signals bench')!;
      await sandbox.control.reply(email, got.id, { text: 'Sounds good' });
      // The reply is now in the sender's mailbox at the sandbox: the clock starts.
      replyTimes.push(await waitFor('replied', i + 1, performance.now()));
      // Spread samples over the poll cycle rather than in step with it.
      await new Promise((r) => setTimeout(r, 137 * (i % 7)));
    }
    const bounceTimes: number[] = [];
    for (let i = 0; i < bounces; i += 1) {
      const email = recipients[replies + i]!;
      const original = sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.to.includes(email))!;
      await sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind: 'hard', form: i % 2 === 0 ? 'text' : 'report' });
      bounceTimes.push(await waitFor('bounced', i + 1, performance.now()));
      await new Promise((r) => setTimeout(r, 137 * (i % 7)));
    }
    return { replyTimes, bounceTimes };
  } finally {
    await jobs.stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await services.sync.idle();
    await services.tracking.close({ timeoutMs: 2_000 });
    await sandbox.close();
    await database.close();
  }
}

console.log(`node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}, ${SAMPLES} replies with push, poll every ${POLL_SECONDS} s for the baseline\n`);
const push = await measure('push', SAMPLES, Math.max(2, Math.round(SAMPLES / 4)));
console.log(`push    reply → stats   ${describe(push.replyTimes)}   (goal p95 < 5 s)`);
console.log(`push    bounce → stats  ${describe(push.bounceTimes)}   (goal p95 < 5 s)`);
const poll = await measure('poll', Math.max(2, Math.round(SAMPLES / 4)), 0);
console.log(`polling reply → stats   ${describe(poll.replyTimes)}   (baseline: no push; goal p95 < ${POLL_SECONDS + 5} s)`);
console.log(`\nload average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
