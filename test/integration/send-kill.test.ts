import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures, seededRandom } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * Invariant 3 under kill -9 (issue #8). A real worker process (`src/main.ts`, started with
 * tsx) sends a campaign through the sandbox that runs in this test process, over the same
 * PostgreSQL server database; at a random moment of the campaign it is killed with SIGKILL.
 * The rows it left `sending` are exactly its sends in flight. This process then plays the
 * next worker: once their leases expire, recovery resolves them and the rest goes out.
 * After each trial: read-scope mailbox → exactly one message per recipient in SENT;
 * send-only mailbox → one or zero, and every zero is `outcome_unknown` and was in flight
 * at the kill. Never an unattempted recipient lost, never two messages.
 *
 * Needs the PostgreSQL server (two processes cannot share an in-process PGlite): runs in
 * the integration suite against TEST_DATABASE_URL, as CI does.
 */

const server = process.env.TEST_DATABASE_URL;
const TRIALS_PER_KIND = Number(process.env.KILL_TRIALS_PER_KIND ?? 10);
const RECIPIENTS = 16;
const LANES = 4;
const GATE_ENV = { GMAIL_SEND_TIMEOUT_SECONDS: '0.8', SEND_LEASE_SECONDS: '1', SEND_RESOLVE_DELAY_SECONDS: '0.05' };


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!server)('kill -9 of a sending worker process (PostgreSQL server)', () => {
  let app: TestApp;
  let databaseUrl: string;
  let token: string;
  let workspaceId: string;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-kill-'));
  const fx = campaignFixtures(() => ({ app, token, workspaceId }));
  /** The next worker process, started while the previous trial recovers (booting takes seconds). */
  let spare: ReturnType<typeof startWorker> | undefined;

  beforeAll(async () => {
    const database = await createTestDatabase();
    databaseUrl = database.url!;
    app = await startTestApp({ database, env: GATE_ENV });
    const owner = await signUp(app);
    token = owner.token;
    workspaceId = owner.workspaceId;
    await app.api('PATCH', '/api/workspace', { token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
  }, 60_000);

  afterAll(async () => {
    if (spare) {
      spare.child.kill('SIGKILL');
      await spare.exited;
    }
    await app?.close();
    await app?.database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** The worker process: the real entry point, its own pacer and leases, our database and sandbox. */
  const startWorker = () =>
    startWorkerProcess(app, {
      databaseUrl,
      dataDir,
      env: {
        ...GATE_ENV,
        GMAIL_SYNC_POLL_SECONDS: '0',
        // Pace and quota are not under test here (processes.test.ts covers them): unpaced, the
        // worker keeps several sends in flight, which is where a kill must land.
        GMAIL_SENDS_PER_MINUTE: '1000000',
        GMAIL_QUOTA_UNITS_PER_MINUTE: '1000000000',
      },
    });

  /** Contacts written straight into the database (the API is not under test here), opted in. */
  async function recipients(trial: number): Promise<string[]> {
    const emails = Array.from({ length: RECIPIENTS }, (_, i) => `k${trial}-${i}-${randomUUID().slice(0, 6)}@contoso.test`);
    const result = (await app.database.db.execute(sql`
      insert into contacts (workspace_id, email, first_name)
      select ${workspaceId}::uuid, e, 'Kim' from unnest(array[${sql.join(
        emails.map((e) => sql`${e}`),
        sql`, `,
      )}]::text[]) as e
      returning id`)) as unknown as { rows: { id: string }[] };
    await app.database.db.execute(sql`
      insert into consents (workspace_id, contact_id, status, source, policy_version, actor)
      select ${workspaceId}::uuid, id, 'opted_in', 'test', '2026-11-01', 'system' from contacts
      where id in (${sql.join(
        result.rows.map((r) => sql`${r.id}::uuid`),
        sql`, `,
      )})`);
    return result.rows.map((r) => r.id);
  }

  const inFlight = async (campaignId: string) =>
    new Set(
      (
        (await app.database.db.execute(sql`select email from campaign_sends where campaign_id = ${campaignId}::uuid and status = 'sending'`)) as unknown as {
          rows: { email: string }[];
        }
      ).rows.map((r) => r.email),
    );

  async function trial(n: number, kind: 'read' | 'send-only', random: () => number) {
    const sender = `killed-${kind}-${n}@acme.test`;
    const mailbox = await connectedMailbox(app, token, sender, { sync: kind === 'read' });
    app.sandbox.control.injectFault({ kind: 'latency', ms: 40 + Math.floor(random() * 80), endpoint: 'send', mailbox: sender, times: 'always' });
    const subject = `K${n} ${kind}`;
    const campaignId = await fx.launched(mailbox.id, subject, await recipients(n));

    // Kill after a random number of sends reached Gmail, plus a random few milliseconds.
    const killAfter = 1 + Math.floor(random() * (RECIPIENTS - 3));
    const t0 = Date.now();
    const worker = spare ?? startWorker();
    const deadline = Date.now() + 60_000;
    while (app.sandbox.control.calls({ endpoint: 'send', mailbox: sender }).length < killAfter) {
      if (Date.now() > deadline) throw new Error(`worker never sent: ${worker.output()}`);
      await sleep(3);
    }
    const t1 = Date.now();
    await sleep(Math.floor(random() * 60));
    worker.child.kill('SIGKILL');
    await worker.exited;
    const flying = await inFlight(campaignId);
    // The next process boots meanwhile; it may join this campaign's recovery (leases keep the two apart).
    spare = startWorker();
    // Only sends actually in flight are ever `sending`: at most one per lane.
    expect(flying.size).toBeLessThanOrEqual(LANES);

    // The next worker (this process): waits out the dead one's leases, resolves, sends the rest.
    await sleep(1_100);
    await fx.drain(campaignId, 60_000);
    await sleep(150); // a request the dead worker had in flight finishes its sandbox latency
    app.sandbox.control.clearFaults();
    const timing = `sending after ${t1 - t0} ms, recovered ${Date.now() - t1} ms after the kill`;

    const counts = fx.sentTo(sender, subject);
    const rows = await fx.ledger(campaignId);
    expect(rows).toHaveLength(RECIPIENTS);
    for (const row of rows) {
      const copies = counts.get(row.email) ?? 0;
      expect(copies, `${row.email} got ${copies} messages`).toBeLessThanOrEqual(1);
      if (kind === 'read') {
        expect(copies, row.email).toBe(1);
        expect(row.status).toBe('sent');
      } else if (copies === 0) {
        expect(row).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });
        expect(flying.has(row.email), `${row.email} was lost without being in flight`).toBe(true);
      } else {
        expect(['sent', 'failed']).toContain(row.status);
        if (row.status === 'failed') expect(flying.has(row.email)).toBe(true);
      }
    }
    // The per-campaign counters (kept by the ledger's statements) equal a recount after the kill.
    expect(await sendCountMismatches(app.database.db), timing).toEqual([]);
    return { killAfter, inFlight: flying.size, timing };
  }

  it(`${TRIALS_PER_KIND * 2} kills at random points, read-scope and send-only mailboxes alternating`, async () => {
    const random = seededRandom(8_2026);
    const seen: string[] = [];
    for (let n = 0; n < TRIALS_PER_KIND * 2; n += 1) {
      const kind = n % 2 === 0 ? 'read' : 'send-only';
      const result = await trial(n, kind, random);
      seen.push(`${kind}: killed after ${result.killAfter} sends, ${result.inFlight} in flight (${result.timing})`);
    }
    console.log(`kill -9 trials:\n  ${seen.join('\n  ')}`);
    // The kills really hit sends in flight (otherwise nothing above was tested).
    expect(seen.filter((s) => !s.includes(' 0 in flight')).length).toBeGreaterThan(0);
    // ~4 s a trial on a quiet 2-core machine (CI); a generous bound for a busy one.
  }, 600_000);
});
