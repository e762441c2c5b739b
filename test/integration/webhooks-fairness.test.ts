import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJobs } from '../../src/jobs.js';
import { WORKSPACE_SLOTS } from '../../src/webhooks/delivery-worker.js';
import { createLogger } from '../../src/logger.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * One workspace's slow receiver must not hold up every other workspace's webhooks. The delivery
 * loop once claimed 20 due deliveries in order of due time and waited for all of them before it
 * claimed again: a receiver that answered 2xx just inside the timeout (never failing, so never
 * backed off or disabled), with a backlog, made every batch last the whole timeout, and another
 * workspace's event queued behind that backlog waited minutes. The worker's own loop
 * (startJobs) runs here, over real receivers.
 */

let app: TestApp;
let slow: WebhookReceiver;
let fast: WebhookReceiver;
const SLOW_MS = 2_000;
const BACKLOG = 45;

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_TIMEOUT_MS: '3000' } });
  // Answers 200 after 2 s, every time: slow, but inside the timeout, so every attempt succeeds.
  slow = await startWebhookReceiver(Array.from({ length: BACKLOG * 2 }, () => ({ hangMs: SLOW_MS })));
  fast = await startWebhookReceiver();
}, 60_000);
afterAll(async () => {
  await slow?.close();
  await fast?.close();
  await app?.close();
});

describe('webhook delivery across workspaces', () => {
  it("another workspace's event is delivered at once while a slow receiver has a backlog", async () => {
    const a = await signUp(app);
    const b = await signUp(app);
    expect((await app.api('POST', '/api/webhooks', { token: a.token, json: { url: slow.url, eventTypes: ['suppression.added'] } })).status).toBe(201);
    expect((await app.api('POST', '/api/webhooks', { token: b.token, json: { url: fast.url, eventTypes: ['suppression.added'] } })).status).toBe(201);
    for (let i = 0; i < BACKLOG; i += 1) {
      expect((await app.api('POST', '/api/suppressions', { token: a.token, json: { email: `slow${i}@example.com` } })).status).toBe(201);
    }
    expect((await app.api('POST', '/api/suppressions', { token: b.token, json: { email: 'fast@example.com' } })).status).toBe(201);

    const jobs = startJobs({ services: app.services, config: app.config, logger: createLogger('silent') });
    const started = Date.now();
    let waitedMs = Number.POSITIVE_INFINITY;
    let slowOpenAtOnce = 0;
    try {
      while (Date.now() - started < 15_000) {
        if (fast.delivered().length > 0) {
          waitedMs = Date.now() - started;
          // Before the first slow answer, the slow workspace holds its share of the slots, no more.
          slowOpenAtOnce = slow.received.length;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await jobs.stop({ graceMs: 3_000 });
    }
    // The slow receiver is being served meanwhile (it is not starved either).
    expect(slowOpenAtOnce).toBeGreaterThan(0);
    expect(slowOpenAtOnce).toBeLessThanOrEqual(WORKSPACE_SLOTS);
    // Within the loop's one-second tick and the request itself, not behind the backlog (≥ 2 batches × 2 s).
    expect(waitedMs).toBeLessThan(2_500);
  }, 60_000);
});
