import { createServer, type Server } from 'node:http';
import { sql } from 'drizzle-orm';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { WORKSPACE_SLOTS } from '../../src/webhooks/delivery-worker.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * One workspace's slow receiver must not hold up every other workspace's webhooks. The delivery
 * loop once claimed the 20 earliest due deliveries and waited for all of them before it claimed
 * again: a receiver that answered 2xx just inside the timeout (never failing, so never backed off
 * or disabled), with a backlog, made every batch last the whole timeout, and another workspace's
 * event queued behind that backlog waited for all of it. The worker's own loop (startJobs) runs
 * here, over real receivers.
 */

let app: TestApp;
let fast: WebhookReceiver;
let slow: Server;
let slowUrl: string;
const SLOW_MS = 2_000;
const BACKLOG = 45;
/** The slow receiver's requests: how many arrived, how many were open at most at once. */
const slowSeen = { received: 0, open: 0, maxOpen: 0 };

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_TIMEOUT_MS: '3000' } });
  // Answers 200 after 2 s, every time: slow, but inside the timeout, so every attempt succeeds.
  slow = createServer((req, res) => {
    req.resume();
    slowSeen.received += 1;
    slowSeen.open += 1;
    slowSeen.maxOpen = Math.max(slowSeen.maxOpen, slowSeen.open);
    setTimeout(() => {
      slowSeen.open -= 1;
      res.writeHead(200).end('ok');
    }, SLOW_MS).unref();
  }).listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => slow.once('listening', () => resolve()));
  slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/hooks`;
  fast = await startWebhookReceiver();
}, 60_000);
afterAll(async () => {
  slow?.closeAllConnections();
  await new Promise((resolve) => slow?.close(resolve));
  await fast?.close();
  await app?.close();
});

describe('webhook delivery across workspaces', () => {
  it("another workspace's event is delivered at once while a slow receiver has a backlog; the slow one holds its share", async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    expect((await app.api('POST', '/api/webhooks', { token: a.token, json: { url: slowUrl, eventTypes: ['suppression.added'] } })).status).toBe(201);
    expect((await app.api('POST', '/api/webhooks', { token: b.token, json: { url: fast.url, eventTypes: ['suppression.added'] } })).status).toBe(201);
    for (let i = 0; i < BACKLOG; i += 1) {
      expect((await app.api('POST', '/api/suppressions', { token: a.token, json: { email: `slow${i}@example.com` } })).status).toBe(201);
    }
    expect((await app.api('POST', '/api/suppressions', { token: b.token, json: { email: 'fast@example.com' } })).status).toBe(201);

    const jobs = startJobs({ services: app.services, config: app.config, logger: createLogger('silent') });
    const started = Date.now();
    let waitedMs = Number.POSITIVE_INFINITY;
    try {
      while (Date.now() - started < 15_000 && (waitedMs === Number.POSITIVE_INFINITY || Date.now() - started < 4 * SLOW_MS)) {
        if (waitedMs === Number.POSITIVE_INFINITY && fast.delivered().length > 0) waitedMs = Date.now() - started;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await jobs.stop({ graceMs: 3_000 });
    }
    // Within the loop's one-second tick and the request itself, not behind the backlog (≥ 2 batches × 2 s).
    expect(waitedMs).toBeLessThan(2_500);
    // The slow workspace is served meanwhile (its slots refilled as they freed), never with more than its share open.
    expect(slowSeen.received).toBeGreaterThan(WORKSPACE_SLOTS);
    expect(slowSeen.maxOpen).toBeLessThanOrEqual(WORKSPACE_SLOTS);
  }, 60_000);
});

describe('webhook delivery across one workspace\'s endpoints', () => {
  // Both endpoints get every event, so their rows are due at the same times; ranked by due time
  // alone, each slot the slow endpoint freed went to whichever row was oldest — its own backlog or
  // the fast endpoint's next — and the fast receiver was held to the slow one's pace.
  it("a slow endpoint's backlog does not hold up the same workspace's other endpoint", async () => {
    const other = await startWebhookReceiver();
    try {
      const c = await signUp(app);
      expect((await app.api('POST', '/api/webhooks', { token: c.token, json: { url: slowUrl, eventTypes: ['suppression.added'] } })).status).toBe(201);
      expect((await app.api('POST', '/api/webhooks', { token: c.token, json: { url: other.url, eventTypes: ['suppression.added'] } })).status).toBe(201);
      for (let i = 0; i < BACKLOG; i += 1) {
        expect((await app.api('POST', '/api/suppressions', { token: c.token, json: { email: `both${i}@example.com` } })).status).toBe(201);
      }
      const jobs = startJobs({ services: app.services, config: app.config, logger: createLogger('silent') });
      const started = Date.now();
      let allMs = Number.POSITIVE_INFINITY;
      try {
        while (Date.now() - started < 20_000 && allMs === Number.POSITIVE_INFINITY) {
          if (other.delivered().length >= BACKLOG) allMs = Date.now() - started;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        await jobs.stop({ graceMs: 3_000 });
      }
      // Held to the slow endpoint's pace it took ~11 s (45 rows, 8 slots, 2 s each); on its own share, ~3 s.
      expect(allMs).toBeLessThan(7_000);
    } finally {
      await other.close();
    }
  }, 60_000);
});

describe('the delivery loop at a stop', () => {
  // A claim running when the loop was stopped (SIGTERM) launched its requests anyway: POSTs
  // started inside the stop's grace, abandoned at the exit with their leases held (2 × timeout +
  // 10 s), and sent again by another worker afterwards.
  it('a claim that returns after stop() sends nothing: its deliveries are handed back, unattempted', async () => {
    const receiver = await startWebhookReceiver();
    try {
      const d = await signUp(app);
      expect((await app.api('POST', '/api/webhooks', { token: d.token, json: { url: receiver.url, eventTypes: ['suppression.added'] } })).status).toBe(201);
      expect((await app.api('POST', '/api/suppressions', { token: d.token, json: { email: 'stopping@example.com' } })).status).toBe(201);
      const worker = app.services.webhookDelivery;
      const pumped = worker.pump();
      // The claim's statement is on its way; the stop comes before its answer.
      await worker.stop();
      await pumped;
      expect(receiver.delivered()).toHaveLength(0);
      const rows = ((await app.database.db.execute(sql`
        select d.status::text as status, d.attempts, d.lease_expires_at is null as free from webhook_deliveries d
        join webhook_endpoints e on e.id = d.endpoint_id where e.workspace_id = ${d.workspaceId}::uuid`)) as unknown as { rows: unknown[] }).rows;
      expect(rows).toEqual([{ status: 'pending', attempts: 0, free: true }]);
      // Given back, not lost: the next loop delivers it.
      await worker.pump();
      await worker.stop();
      expect(receiver.delivered()).toHaveLength(1);
    } finally {
      await receiver.close();
    }
  }, 60_000);
});
