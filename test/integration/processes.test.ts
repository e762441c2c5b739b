import { createServer } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import {
  SANDBOX_CLIENT_ID,
  SANDBOX_CLIENT_SECRET,
  createScratchDatabase,
  seedCampaign,
  serviceEnv,
  spawnService,
  type ServiceProcess,
} from '../../scripts/bench/fixture.js';

/*
 * Invariant 10 with real processes: two and three `npm run worker` processes (tsx
 * scripts/worker.ts) on one PostgreSQL server, one Gmail sandbox in this process with latency
 * and a 429 storm. Counted in the sandbox, by arrival: the mailbox's sends per minute never
 * exceed GMAIL_SENDS_PER_MINUTE across all workers, no send arrives while a Retry-After pause
 * holds, nobody gets the campaign twice, and each periodic job ran once per period. Then the
 * shutdown promise: SIGTERM with Gmail calls in flight, exit 0 within 5 s.
 *
 * Separate processes share a server, not an embedded PGlite: without TEST_DATABASE_URL this
 * file is skipped (CI runs it in the integration suite against the server).
 */

const serverUrl = process.env.TEST_DATABASE_URL;
if (!serverUrl) console.info('processes.test.ts skipped: it needs TEST_DATABASE_URL (several processes share a PostgreSQL server)');

const SENDS_PER_MINUTE = 60;
const SEND_LATENCY_MS = 250;
const RETRY_AFTER_SECONDS = 4;
const POLL_SECONDS = 5;
const PUSH_TOPIC = 'projects/inboxtrail-test/topics/gmail';

let sandbox: Sandbox;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  if (!serverUrl) return;
  sandbox = await startSandbox({ port: 0, autoApprove: true, clientId: SANDBOX_CLIENT_ID, clientSecret: SANDBOX_CLIENT_SECRET });
  cleanups.push(() => sandbox.close());
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A migrated scratch database with a launched campaign, seeded from this process. */
async function prepare(options: { mailboxEmail: string; domain: string; recipients: number; sync: boolean }) {
  const scratch = await createScratchDatabase(serverUrl!, 'inboxtrail_procs');
  cleanups.push(scratch.drop);
  const env = { ...serviceEnv(sandbox.url), DATABASE_URL: scratch.url };
  const database = await connect({ kind: 'postgres', url: scratch.url, poolSize: 3 });
  cleanups.push(() => database.close());
  await database.migrate();
  const config = loadConfig(env);
  const services = createServices({ config, database, logger: createLogger('silent'), google: await resolveGoogle(config) });
  sandbox.control.createMailbox({ email: options.mailboxEmail });
  const seeded = await seedCampaign(services, database, options);
  return { env, database, seeded };
}

/** SIGTERM, then how long the process took to exit and its code. */
async function terminate(proc: ServiceProcess): Promise<{ ms: number; code: number | null }> {
  const started = Date.now();
  proc.child.kill('SIGTERM');
  const code = await Promise.race([proc.exited, sleep(10_000).then(() => 'hung' as const)]);
  if (code === 'hung') {
    proc.child.kill('SIGKILL');
    return { ms: Infinity, code: null };
  }
  return { ms: Date.now() - started, code };
}

/** The most calls in any window of `windowMs` (calls are arrival times, ms). */
function busiestWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! < sorted[i]! - windowMs + 1) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

async function scenario(workers: number) {
  const mailboxEmail = `pace${workers}@acme.test`;
  const { env, database } = await prepare({ mailboxEmail, domain: `w${workers}.test`, recipients: 120, sync: true });
  sandbox.control.injectFault({ kind: 'latency', ms: SEND_LATENCY_MS, endpoint: 'send', mailbox: mailboxEmail, times: 'always' });

  const startedAt = Date.now();
  const processes = Array.from({ length: workers }, () =>
    spawnService('scripts/worker.ts', {
      ...env,
      GMAIL_SENDS_PER_MINUTE: String(SENDS_PER_MINUTE),
      GMAIL_SYNC_POLL_SECONDS: String(POLL_SECONDS),
      GMAIL_PUSH_TOPIC: PUSH_TOPIC,
      LOG_LEVEL: 'warn',
    }),
  );
  cleanups.push(async () => processes.forEach((p) => p.child.kill('SIGKILL')));
  const sendCalls = () => sandbox.control.calls({ endpoint: 'send', mailbox: mailboxEmail });
  // Generous: five tsx processes compiling at once on a busy 2-core machine take a while to boot.
  await until('the first send', () => sendCalls().length > 0, 150_000).catch((error: Error) => {
    throw new Error(`${error.message}; worker output:\n${processes.map((p) => p.output().slice(-1500)).join('\n---\n')}`);
  });
  const firstSendAt = Date.now();

  // The storm: three 429s in a row, each asking for 4 s.
  await sleep(15_000);
  sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: RETRY_AFTER_SECONDS, endpoint: 'send', mailbox: mailboxEmail, times: 3 });
  await sleep(Math.max(0, firstSendAt + 62_000 - Date.now()));

  // Shut down with sends in flight; every worker must be gone within 5 s, cleanly.
  const stoppingAt = Date.now();
  const exits = await Promise.all(processes.map(terminate));
  // At most: from the first spawn to the last exit; at least: while they were surely all up.
  const elapsedMs = Date.now() - startedAt;
  const upMs = stoppingAt - firstSendAt;
  return { workers, mailboxEmail, database, processes, exits, elapsedMs, upMs, calls: sendCalls() };
}

describe.skipIf(!serverUrl)('several worker processes on one PostgreSQL server', () => {
  it('keep one mailbox inside its pace and Retry-After together, send nobody twice, and run each periodic job once per period', async () => {
    const results = await Promise.all([scenario(2), scenario(3)]);
    for (const { workers, mailboxEmail, database, processes, exits, elapsedMs, upMs, calls } of results) {
      const context = `${workers} workers`;
      for (const [i, exit] of exits.entries()) {
        expect(exit.code, `${context}: worker ${i} exit code; output:\n${processes[i]!.output().slice(-2000)}`).toBe(0);
        expect(exit.ms, `${context}: worker ${i} shutdown time`).toBeLessThan(5_000);
        // npm run worker: the background work only, no HTTP listener.
        expect(processes[i]!.output()).toContain('role: worker (sending, sync and scheduled jobs)');
        expect(processes[i]!.output()).not.toContain('listening on');
      }

      // Arrival at the sandbox: the call is logged when answered, after the injected latency.
      const arrivals = calls.map((c) => ({ at: Date.parse(c.at) - SEND_LATENCY_MS, status: c.status }));
      const delivered = arrivals.filter((c) => c.status < 400).map((c) => c.at);
      expect(delivered.length, context).toBeGreaterThanOrEqual(35);
      // Any 60 s (less 200 ms for timer and network jitter) holds at most the configured pace.
      expect(busiestWindow(delivered, 60_000 - 200), context).toBeLessThanOrEqual(SENDS_PER_MINUTE);
      // Three workers pacing alone would have sent three times as many; shared, they keep close to the pace.
      expect(busiestWindow(delivered, 60_000 - 200), context).toBeGreaterThanOrEqual(SENDS_PER_MINUTE * 0.6);

      // Retry-After across workers: after a 429 was answered, no send reached that mailbox until it had passed
      // (500 ms for a call another worker had already been granted when the pause was recorded).
      const limited = calls.filter((c) => c.status === 429).map((c) => Date.parse(c.at));
      expect(limited.length, context).toBeGreaterThanOrEqual(2);
      for (const answeredAt of limited) {
        const during = arrivals.filter((c) => c.at > answeredAt + 500 && c.at < answeredAt + RETRY_AFTER_SECONDS * 1000);
        expect(during, `${context}: sends during the pause after the 429 at ${new Date(answeredAt).toISOString()}`).toEqual([]);
      }

      // Nobody got the campaign twice.
      const sent = sandbox.control.listMessages(mailboxEmail, { labelId: 'SENT' });
      const perRecipient = new Map<string, number>();
      for (const message of sent) for (const to of message.to) perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1);
      expect([...perRecipient.entries()].filter(([, n]) => n > 1), context).toEqual([]);
      expect(sent.length, context).toBe(delivered.length);

      // Each periodic job once per period across the workers: boot-time jobs once, the poll once per 5 s at most.
      const jobs = (await database.db.execute(sql`select name, run_count from job_schedule order by name`)) as unknown as {
        rows: { name: string; run_count: number }[];
      };
      const runs = Object.fromEntries(jobs.rows.map((r) => [r.name, Number(r.run_count)]));
      expect(runs['reencrypt-tokens:v1'], context).toBe(1);
      expect(runs['tracking-retention'], context).toBe(1);
      expect(runs['gmail-watch-renewal'], context).toBe(1);
      // (Asked four times a period, a due poll is claimed within a quarter period; the workers take a few seconds to boot.)
      expect(runs['gmail-sync-poll'], context).toBeGreaterThanOrEqual(Math.floor(upMs / (1.25 * POLL_SECONDS * 1000)) - 1);
      expect(runs['gmail-sync-poll'], context).toBeLessThanOrEqual(Math.floor(elapsedMs / (POLL_SECONDS * 1000)) + 1);
      expect(sandbox.control.calls({ endpoint: 'watch', mailbox: mailboxEmail }).length, context).toBe(1);
    }
  }, 330_000);

  it('with 20 s Gmail latency and a 429 storm, two and three workers deliver every recipient exactly once', async () => {
    // Each send takes 20 s to answer (the 15-60 s range): a lane holds its claim that long,
    // other workers run beside it, and the ledger must still end with one message per recipient.
    const RECIPIENTS = 16;
    const run = async (workers: number) => {
      const mailboxEmail = `slow${workers}@acme.test`;
      const { env, database } = await prepare({ mailboxEmail, domain: `slow${workers}.test`, recipients: RECIPIENTS, sync: true });
      sandbox.control.injectFault({ kind: 'latency', ms: 20_000, endpoint: 'send', mailbox: mailboxEmail, times: 'always' });
      const processes = Array.from({ length: workers }, () =>
        spawnService('scripts/worker.ts', { ...env, GMAIL_SENDS_PER_MINUTE: '600', GMAIL_SYNC_POLL_SECONDS: '0', LOG_LEVEL: 'warn' }),
      );
      cleanups.push(async () => processes.forEach((p) => p.child.kill('SIGKILL')));
      const sentMessages = () => sandbox.control.listMessages(mailboxEmail, { labelId: 'SENT' });
      await until(`the first send (${workers} workers)`, () => sandbox.control.calls({ endpoint: 'send', mailbox: mailboxEmail }).length > 0 || sentMessages().length > 0, 150_000);
      // The storm, while sends are in flight: three 429s asking for 4 s each.
      sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: RETRY_AFTER_SECONDS, endpoint: 'send', mailbox: mailboxEmail, times: 3 });
      await until(`every recipient served (${workers} workers)`, async () => {
        const rows = (await database.db.execute(sql`select count(*)::int as n from campaign_sends where status = 'sent'`)) as unknown as { rows: { n: number }[] };
        return Number(rows.rows[0]!.n) === RECIPIENTS;
      }, 240_000);
      const exits = await Promise.all(processes.map(terminate));
      const limited = sandbox.control.calls({ endpoint: 'send', mailbox: mailboxEmail }).filter((c) => c.status === 429).length;
      return { workers, sent: sentMessages(), exits, processes, limited, counterMismatches: await sendCountMismatches(database.db) };
    };
    for (const { workers, sent, exits, processes, limited, counterMismatches } of await Promise.all([run(2), run(3)])) {
      const context = `${workers} workers`;
      expect(counterMismatches, `${context}: send counters equal a recount of the ledger`).toEqual([]);
      expect(limited, `${context}: 429s answered`).toBeGreaterThanOrEqual(1);
      const perRecipient = new Map<string, number>();
      for (const message of sent) for (const to of message.to) perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1);
      expect(perRecipient.size, context).toBe(RECIPIENTS);
      expect([...perRecipient.entries()].filter(([, n]) => n > 1), context).toEqual([]);
      for (const [i, exit] of exits.entries()) expect(exit.code, `${context}: worker ${i}; output:\n${processes[i]!.output().slice(-1500)}`).toBe(0);
    }
  }, 420_000);

  it('a service process stops within 5 s of SIGTERM, exit code 0, while Gmail calls are in flight', async () => {
    const mailboxEmail = 'slow@acme.test';
    const { env, database } = await prepare({ mailboxEmail, domain: 'slow.test', recipients: 20, sync: false });
    // Each send takes 20 s to answer: whatever is in flight at SIGTERM cannot finish in time.
    const slow = sandbox.control.injectFault({ kind: 'latency', ms: 20_000, endpoint: 'send', mailbox: mailboxEmail, times: 'always' });
    const port = await freePort();
    const proc = spawnService('src/main.ts', { ...env, PORT: String(port), HOST: '127.0.0.1', GMAIL_SENDS_PER_MINUTE: '600', LOG_LEVEL: 'info' });
    cleanups.push(async () => proc.child.kill('SIGKILL'));
    await until('a send in flight', () => sandbox.control.listFaults().some((f) => f.id === slow.id && f.hits >= 2), 60_000);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

    const exit = await terminate(proc);
    expect(exit.code, proc.output().slice(-2000)).toBe(0);
    expect(exit.ms).toBeLessThan(5_000);
    expect(proc.output()).toContain('"msg":"stopped"');
    expect(proc.output()).not.toContain('shutdown did not finish in time');
    // Nothing was answered, so nothing is recorded sent; the rows in flight are left for recovery.
    const sent = (await database.db.execute(sql`select count(*)::int as n from campaign_sends where status = 'sent'`)) as unknown as { rows: { n: number }[] };
    expect(Number(sent.rows[0]!.n)).toBe(0);
  }, 120_000);
});
