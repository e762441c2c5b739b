import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignatureHeader } from '../../src/webhooks/signature.js';
import { signUp, startTestApp, TEST_ENV, type TestApp } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-db.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * At-least-once across kill -9 (issue 12). A real service process (`src/main.ts` under tsx,
 * HTTP and worker in one) commits a fact — an API call that adds a suppression — and is
 * killed with SIGKILL right after answering, before it delivered the event. The next
 * process delivers the event from the outbox; it is killed too, this time with the
 * delivery in flight (the receiver holds the request). The third delivers it once the dead
 * process's lease has expired. The receiver gets the event, signed, with its one id.
 *
 * Needs the PostgreSQL server (processes cannot share an in-process PGlite).
 */

const root = path.resolve(import.meta.dirname, '../..');
const server = process.env.TEST_DATABASE_URL;
const WEBHOOK_ENV = { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_TIMEOUT_MS: '1500', WEBHOOKS_RETRY_BASE_SECONDS: '0.05' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => probe.once('listening', () => resolve()));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe.skipIf(!server)('webhook delivery across kill -9 (PostgreSQL server)', () => {
  let app: TestApp;
  let databaseUrl: string;
  let receiver: WebhookReceiver;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-webhook-kill-'));
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    const database = await createTestDatabase();
    databaseUrl = database.url!;
    app = await startTestApp({ database, env: WEBHOOK_ENV });
    // The second process's delivery is held past its kill; every later request is answered 200.
    receiver = await startWebhookReceiver([{ hangMs: 60_000 }]);
  }, 60_000);

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await receiver?.close();
    await app?.close();
    await app?.database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** The real entry point on our database: HTTP on `port`, and the background jobs (webhook delivery among them). */
  function startService(port: number) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        ...TEST_ENV,
        ...WEBHOOK_ENV,
        LOG_LEVEL: 'warn',
        PORT: String(port),
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        GMAIL_SYNC_POLL_SECONDS: '0',
        ...app.sandbox.env(),
        GOOGLE_REDIRECT_URI: 'http://127.0.0.1:1/api/gmail/callback',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk) => (output += String(chunk)));
    child.stderr!.on('data', (chunk) => (output += String(chunk)));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const ready = (async () => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`service exited: ${output}`);
        if (Date.now() > deadline) throw new Error(`service did not start: ${output}`);
        if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) return;
        await sleep(100);
      }
    })();
    return { child, exited, ready, output: () => output };
  }

  async function kill(service: ReturnType<typeof startService>) {
    service.child.kill('SIGKILL');
    await service.exited;
  }

  it('an event whose fact committed is delivered after its process, and then a delivering process, are killed', async () => {
    const owner = await signUp(app);
    const created = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: receiver.url, eventTypes: ['suppression.added'] } });
    expect(created.status).toBe(201);
    const secret = created.body.secret as string;

    // 1. The fact, committed by the service process, which dies right after answering.
    const port = await freePort();
    const first = startService(port);
    await first.ready;
    const fact = await fetch(`http://127.0.0.1:${port}/api/suppressions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
      body: JSON.stringify({ email: 'killed@contoso.test' }),
    });
    expect(fact.status).toBe(201);
    await kill(first);
    const [event] = (
      (await app.database.db.execute(sql`select id from webhook_events where workspace_id = ${owner.workspaceId}::uuid`)) as unknown as { rows: { id: string }[] }
    ).rows;
    expect(event).toBeDefined();

    // 2. The next process picks it up from the outbox and is killed with the request in flight.
    const second = startService(await freePort());
    const deadline = Date.now() + 60_000;
    while (receiver.received.length === 0) {
      if (Date.now() > deadline) throw new Error(`the second process never delivered: ${second.output()}`);
      await sleep(20);
    }
    await kill(second);
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.answered).toBe('hung');

    // 3. The third delivers it once the dead process's lease expires, and records it.
    const third = startService(await freePort());
    const deliveryLog = async () => (await app.api('GET', `/api/webhooks/${created.body.id}/deliveries`, { token: owner.token })).body.deliveries;
    while ((await deliveryLog())[0]?.status !== 'delivered') {
      if (Date.now() > deadline + 30_000) throw new Error(`the third process never delivered: ${third.output()}`);
      await sleep(100);
    }
    await kill(third);

    const delivered = receiver.received.filter((r) => r.answered === 200);
    expect(delivered.length).toBeGreaterThanOrEqual(1);
    for (const request of receiver.received) {
      expect(JSON.parse(request.body)).toMatchObject({ id: event!.id, type: 'suppression.added', data: { email: 'killed@contoso.test' } });
      expect(verifySignatureHeader(String(request.headers['inboxtrail-signature']), secret, request.body)).toBe(true);
    }
    const [delivery] = await deliveryLog();
    expect(delivery).toMatchObject({ eventId: event!.id, status: 'delivered' });
    // The killed attempt left no log row (its process died mid-request); the one after it did.
    expect(delivery.attempts).toBeGreaterThanOrEqual(2);
    expect(delivery.log.at(-1)).toMatchObject({ outcome: 'delivered', responseStatus: 200, attempt: delivery.attempts });
  }, 240_000);
});
