import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignatureHeader } from '../../src/webhooks/signature.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { memberInBrowser, signUpInBrowser } from '../helpers/web-client.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * Settings → a webhook endpoint's page: the delivery log with every attempt, redelivery of one
 * event and secret rotation, over real HTTP with the session cookie and CSRF, against a real
 * receiver — the same service as /api/webhooks/:id/deliveries, …/redeliver and …/rotate-secret.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let ownerToken: string;
let receiver: WebhookReceiver;
let endpointPath: string;
let firstSecret: string;

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_RETRY_BASE_SECONDS: '0.02' } });
  // The first attempt fails (500), everything after succeeds.
  receiver = await startWebhookReceiver([{ status: 500 }]);
  owner = await signUpInBrowser(app);
  ownerToken = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
  await owner.browser.get('/app/settings/integrations');
  const form = new URLSearchParams([['url', receiver.url], ['eventTypes', 'suppression.added'], ['_csrf', owner.browser.csrfToken()]]);
  const added = await owner.browser.request('POST', '/app/settings/webhooks', form);
  expect(added.status, added.text).toBe(201);
  firstSecret = /<code>([^<]+)<\/code>/.exec(added.text)![1]!;
  const list = await owner.browser.get('/app/settings/integrations');
  endpointPath = /href="(\/app\/settings\/webhooks\/[0-9a-f-]{36})"/.exec(list.text)![1]!;
});
afterAll(async () => {
  await receiver?.close();
  await app?.close();
});

async function deliverAll() {
  for (let i = 0; i < 20; i += 1) {
    if ((await app.services.webhookDelivery.tick()) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}
const suppress = (email: string) => app.api('POST', '/api/suppressions', { token: ownerToken, json: { email } });

describe('Settings → webhook endpoint page', () => {
  it('shows each delivery with every attempt; a failed first try is there with its HTTP status; the status filter narrows it', async () => {
    expect((await suppress('first@hooks.example')).status).toBe(201);
    await app.services.webhookDelivery.tick();
    const page = await owner.browser.get(endpointPath);
    expect(page.status).toBe(200);
    expect(page.text).toContain(receiver.url);
    expect(page.text).toContain('suppression.added');
    expect(page.text).toContain('(HTTP 500)');
    expect(page.text).toContain('1 failed attempt in a row');
    expect(page.text).not.toContain(firstSecret);

    await deliverAll();
    const delivered = await owner.browser.get(`${endpointPath}?status=delivered`);
    expect(delivered.text).toContain('(HTTP 200)');
    expect((await owner.browser.get(`${endpointPath}?status=failed`)).text).toContain('No deliveries with that status');
    expect((await owner.browser.get(`${endpointPath}?status=bogus`)).status).toBe(400);
  });

  it('redelivers one event from the page (same event id), with the CSRF token only', async () => {
    const page = await owner.browser.get(endpointPath);
    const action = /action="([^"]+\/events\/([0-9a-f-]{36})\/redeliver)"/.exec(page.text)!;
    const [path, eventId] = [action[1]!, action[2]!];
    const forged = await owner.browser.post(path, {}, { csrf: null });
    expect(forged.status).toBe(403);

    await owner.browser.get(endpointPath);
    const before = receiver.delivered().filter((d) => d.id === eventId).length;
    const queued = await owner.browser.post(path, {});
    expect([queued.status, queued.location]).toEqual([303, `${endpointPath}?notice=redelivery_queued`]);
    expect((await owner.browser.get(queued.location!)).text).toContain('queued to be delivered again');
    await deliverAll();
    expect(receiver.delivered().filter((d) => d.id === eventId).length).toBe(before + 1);
    expect((await owner.browser.get(endpointPath)).text).toContain('(redelivery)');
  });

  it('rotates the secret: the new one is shown once, signs the next delivery, and the old one still signs during the grace period', async () => {
    await owner.browser.get(endpointPath);
    const rotated = await owner.browser.post(`${endpointPath}/rotate-secret`, {});
    expect(rotated.status).toBe(200);
    const secret = /<code>([^<]+)<\/code>/.exec(rotated.text)![1]!;
    expect(secret).not.toBe(firstSecret);
    expect(rotated.text).toContain('The old one keeps signing until');
    expect((await owner.browser.get(endpointPath)).text).not.toContain(secret);

    const seen = receiver.received.length;
    await suppress('second@hooks.example');
    await deliverAll();
    const next = receiver.received.slice(seen).find((r) => r.body.includes('second@hooks.example'))!;
    const signature = String(next.headers['inboxtrail-signature']);
    expect(verifySignatureHeader(signature, secret, next.body)).toBe(true);
    expect(verifySignatureHeader(signature, firstSecret, next.body)).toBe(true);
  });

  it('a disabled endpoint is not redelivered to: the refusal shows on its page', async () => {
    const page = await owner.browser.get(endpointPath);
    const path = /action="([^"]+\/redeliver)"/.exec(page.text)![1]!;
    await owner.browser.post(`${endpointPath}/disable`, {});
    const refused = await owner.browser.post(path, {}, { csrf: (await owner.browser.get(endpointPath), owner.browser.csrfToken()) });
    expect(refused.status).toBe(409);
    expect(refused.text).toMatch(/role="alert">Enable the endpoint/);
    expect(refused.text).toContain('enable to redeliver');
  });

  it('a member is refused, and another workspace sees nothing of it (404)', async () => {
    const member = await memberInBrowser(app, owner.browser);
    expect((await member.get(endpointPath)).status).toBe(403);

    const stranger = await signUpInBrowser(app);
    const seen = await stranger.browser.get(endpointPath);
    expect(seen.status).toBe(404);
    expect(seen.text).not.toContain(receiver.url);
    await stranger.browser.get('/app/settings/integrations');
    expect((await stranger.browser.post(`${endpointPath}/rotate-secret`, {})).status).toBe(404);
  });
});
