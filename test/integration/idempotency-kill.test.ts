import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForHealth } from '../helpers/spawned.js';
import { freePort, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * An Idempotency-Key outlives a kill -9 of the process serving POST /api/messages. Process A
 * (`src/main.ts`) claims the send and is killed with SIGKILL while Gmail (the sandbox, slowed
 * down) holds the request, which still goes out. The key stays `in_progress`; process B, a
 * fresh one on the same database, gets the retries with the same key: while A's lease could
 * still be a live request, 409 naming the message; then the message's state (202 `pending`
 * until recovery settles it, 201 `sent` after), replayed, and never a second mail. Before the
 * key was linked to the message, every retry was a bare 409 for 24 hours.
 *
 * Killed before its claim instead (A waits for a token refresh the sandbox holds), A linked no
 * message: while A's key lease could still be a live request, a bare 409; once it is over, B
 * takes the key over and sends, once. Before the lease, that key was a bare 409 for 24 hours.
 *
 * Needs the PostgreSQL server (two processes cannot share an in-process PGlite).
 */

const server = process.env.TEST_DATABASE_URL;
// A live send never outlasts its lease (config.ts): at most 2 s in Gmail, a 5 s lease.
const GATE_ENV = { GMAIL_SEND_TIMEOUT_SECONDS: '2', SEND_LEASE_SECONDS: '5', SEND_RESOLVE_DELAY_SECONDS: '0.05' };
const GMAIL_LATENCY_MS = 1_500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!server)('Idempotency-Key after kill -9 of the sending process (PostgreSQL server)', () => {
  let app: TestApp;
  let databaseUrl: string;
  let token: string;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-idem-kill-'));
  const started: ReturnType<typeof startWorkerProcess>[] = [];

  beforeAll(async () => {
    const database = await createTestDatabase();
    databaseUrl = database.url!;
    app = await startTestApp({ database, env: GATE_ENV });
    token = (await signUp(app)).token;
  }, 60_000);

  afterAll(async () => {
    for (const worker of started) {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    await app?.close();
    await app?.database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** The service as its own process on a known port: HTTP, its send worker and recovery. */
  async function serviceProcess() {
    const port = await freePort();
    const worker = startWorkerProcess(app, { databaseUrl, dataDir, env: { ...GATE_ENV, PORT: String(port), GMAIL_SYNC_POLL_SECONDS: '0' } });
    started.push(worker);
    return { ...worker, port };
  }

  const post = (port: number, key: string, json: unknown) =>
    fetch(`http://127.0.0.1:${port}/api/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(json),
    });
  const answerOf = async (response: Response) => ({ status: response.status, replayed: response.headers.get('idempotent-replayed'), body: (await response.json()) as any });

  it('a retry from a fresh process answers the message the killed one claimed, and it is sent once', async () => {
    const sender = 'idem-killed@acme.test';
    const mailbox = await connectedMailbox(app, token, sender, { sync: true }); // read access: recovery can search it
    const subject = `Killed mid-send ${Date.now()}`;
    const mail = { mailboxId: mailbox.id, to: 'pat@contoso.test', subject, text: 'Hello' };
    const key = `crm-retry-${Date.now()}`;
    const [a, b] = await Promise.all([serviceProcess(), serviceProcess()]);
    for (const p of [a, b]) expect(await waitForHealth(p.port), p.output()).toBeDefined();

    // A: the send reaches Gmail, which takes its time; A dies before it can answer or record.
    app.sandbox.control.injectFault({ kind: 'latency', ms: GMAIL_LATENCY_MS, endpoint: 'send', mailbox: sender, times: 1 });
    const first = post(a.port, key, mail).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    // The claim (which links the key) commits right before the request goes to Gmail; kill A inside Gmail's 1.5 s.
    const linked = sql`select 1 from idempotency_keys where key = ${key} and message_id is not null`;
    while (rowsOf(await app.database.db.execute(linked)).length === 0) {
      if (Date.now() > deadline) throw new Error(`A never claimed the send: ${a.output()}`);
      await sleep(5);
    }
    await sleep(300);
    a.child.kill('SIGKILL');
    await a.exited;
    const sendCalls = () => app.sandbox.control.calls({ endpoint: 'send', mailbox: sender }).length;
    const callsAtKill = sendCalls();
    expect(await first).toBeUndefined();

    // B, at once: A's lease could still be a live request, so no answer yet, but the message's id.
    const early = await answerOf(await post(b.port, key, mail));
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('idempotency_in_progress');
    const messageId = early.body.error.details?.messageId as string;
    expect(messageId).toMatch(/^[0-9a-f-]{36}$/);

    // Once the lease is over: the message's state, as the route answers it, replayed.
    let later = early;
    while (later.status === 409) {
      if (Date.now() > deadline) throw new Error(`still 409 after the lease: ${JSON.stringify(later.body)}`);
      await sleep(200);
      later = await answerOf(await post(b.port, key, mail));
    }
    expect([201, 202]).toContain(later.status);
    expect(later.replayed).toBe('true');
    expect(later.body).toMatchObject({ id: messageId, status: later.status === 201 ? 'sent' : 'pending', subject });

    // Recovery (B's send worker) finds the mail by its Message-ID; the retry then says sent.
    while (later.status !== 201) {
      if (Date.now() > deadline) throw new Error(`never settled: ${JSON.stringify(later.body)} ${b.output()}`);
      await sleep(200);
      later = await answerOf(await post(b.port, key, mail));
    }
    expect(later).toMatchObject({ replayed: 'true', body: { id: messageId, status: 'sent' } });
    expect((await app.api('GET', `/api/messages/${messageId}`, { token })).body.status).toBe('sent');

    // One mail went out (A's, which Gmail stored after A died), and no retry asked Gmail to send.
    await sleep(GMAIL_LATENCY_MS);
    expect(app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).filter((m) => m.subject === subject)).toHaveLength(1);
    expect(sendCalls()).toBe(callsAtKill);
  }, 120_000);

  it('a retry from a fresh process takes over the key of a process killed before its claim, and the mail goes out once', async () => {
    const sender = 'idem-killed-early@acme.test';
    const mailbox = await connectedMailbox(app, token, sender);
    // Its access token is due: A's send first waits for a refresh, which the sandbox holds, before the pacer's turn and the claim.
    await app.database.db.execute(sql`update mailboxes set access_token_expires_at = now() where id = ${mailbox.id}::uuid`);
    const subject = `Killed before its claim ${Date.now()}`;
    const mail = { mailboxId: mailbox.id, to: 'pat@contoso.test', subject, text: 'Hello' };
    const key = `crm-early-${Date.now()}`;
    const [a, b] = await Promise.all([serviceProcess(), serviceProcess()]);
    for (const p of [a, b]) expect(await waitForHealth(p.port), p.output()).toBeDefined();

    app.sandbox.control.injectFault({ kind: 'latency', ms: 3_000, endpoint: 'token', mailbox: sender, times: 1 });
    const first = post(a.port, key, mail).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    const leased = sql`select 1 from idempotency_keys where key = ${key} and lease_expires_at is not null and message_id is null`;
    while (rowsOf(await app.database.db.execute(leased)).length === 0) {
      if (Date.now() > deadline) throw new Error(`A never took the key: ${a.output()}`);
      await sleep(5);
    }
    await sleep(300);
    a.child.kill('SIGKILL');
    await a.exited;
    expect(await first).toBeUndefined();

    // B, at once: A's lease could still be a live request; nothing is linked to name.
    const early = await answerOf(await post(b.port, key, mail));
    expect([early.status, early.body.error.code, early.body.error.details]).toEqual([409, 'idempotency_in_progress', undefined]);

    // Once A's lease is over, B takes the key over and runs the send.
    let later = early;
    while (later.status === 409) {
      if (Date.now() > deadline) throw new Error(`still 409 after the lease: ${JSON.stringify(later.body)}`);
      await sleep(200);
      later = await answerOf(await post(b.port, key, mail));
    }
    expect([later.status, later.replayed]).toEqual([201, null]);
    expect(later.body).toMatchObject({ status: 'sent', subject });
    const replay = await answerOf(await post(b.port, key, mail));
    expect([replay.status, replay.replayed, replay.body.id]).toEqual([201, 'true', later.body.id]);

    expect(app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).filter((m) => m.subject === subject)).toHaveLength(1);
    expect(app.sandbox.control.calls({ endpoint: 'send', mailbox: sender })).toHaveLength(1);
  }, 120_000);
});
