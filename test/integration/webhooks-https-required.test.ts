import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenCipher } from '../../src/gmail/token-cipher.js';
import { createLogger } from '../../src/logger.js';
import { createDeliveryWorker } from '../../src/webhooks/delivery-worker.js';
import { createWebhookSender } from '../../src/webhooks/sender.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';
import { createWebhooksService } from '../../src/webhooks/webhooks.service.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * With https required (NODE_ENV=production) an endpoint saved over http:// before the rule
 * went on receiving every payload in plaintext. Now nothing is sent to it: each attempt is
 * logged `https_required` (retried on the usual schedule, failed when the window ends), the
 * endpoint shows `needsHttpsUrl`, and changing its URL to https delivers what it is owed.
 * The worker and service here are production's (requireHttps) over this test's database; the
 * receivers are on loopback, so private targets stay allowed — the two rules are independent.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let plain: WebhookReceiver;
let tls: Server;
let tlsDir: string;
const overTls: string[] = [];

beforeAll(async () => {
  // The app as it ran before the rule: http:// endpoints taken.
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true' } });
  owner = await signUp(app);
  plain = await startWebhookReceiver();
  tlsDir = mkdtempSync(path.join(tmpdir(), 'inboxtrail-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', path.join(tlsDir, 'key.pem'), '-out', path.join(tlsDir, 'cert.pem')], { stdio: 'ignore' });
  tls = createServer({ key: readFileSync(path.join(tlsDir, 'key.pem')), cert: readFileSync(path.join(tlsDir, 'cert.pem')) }, (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      overTls.push(body);
      res.writeHead(200).end();
    });
  }).listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => tls.once('listening', () => resolve()));
}, 60_000);
afterAll(async () => {
  tls?.close();
  if (tlsDir) rmSync(tlsDir, { recursive: true, force: true });
  await plain?.close();
  await app?.close();
});

const auth = () => ({ userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' as const });

/** Production's delivery worker (https required) over this test's database. */
const productionWorker = (workerId: string, retryBaseMs: number, retryWindowMs: number) =>
  createDeliveryWorker({
    repo: createWebhooksRepo(app.database.db),
    cipher: createTokenCipher(app.config.tokenEncryptionKeys),
    send: createWebhookSender({ timeoutMs: 2_000, maxResponseBytes: 1024, allowPrivateTargets: true, requireHttps: true }),
    logger: createLogger('silent'),
    workerId,
    requireHttps: true,
    timeoutMs: 2_000,
    retryBaseMs,
    retryWindowMs,
    disableAfterFailures: 50,
    disableAfterMs: 72 * 3_600_000,
  });

describe('http:// endpoints when https is required', () => {
  it('are sent nothing: the attempt is logged https_required, the listing says it needs an https URL, and an https URL delivers what it is owed', async () => {
    const repo = createWebhooksRepo(app.database.db);
    const cipher = createTokenCipher(app.config.tokenEncryptionKeys);
    const production = createWebhooksService({ repo, cipher, allowPrivateTargets: true, requireHttps: true, maxEndpointsPerWorkspace: 20, secretGraceMs: 0 });
    const worker = productionWorker('https-required-test', 3_600_000, 3_600_000);

    // Saved over http:// before the rule.
    const created = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: plain.url, eventTypes: ['suppression.added'] } });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'plaintext@contoso.test' } })).status).toBe(201);

    expect(await worker.tick()).toBe(1);
    expect(plain.received).toHaveLength(0);
    const log = await production.deliveries(auth(), id, { limit: 10 });
    expect(log.deliveries).toHaveLength(1);
    expect(log.deliveries[0]).toMatchObject({ status: 'pending', attempts: 1, lastError: 'https_required', lastResponseStatus: null });
    expect(log.deliveries[0]!.log).toMatchObject([{ attempt: 1, outcome: 'https_required', responseStatus: null }]);
    const listed = (await production.list(auth())).endpoints.find((e) => e.id === id)!;
    expect(listed).toMatchObject({ url: plain.url, needsHttpsUrl: true, status: 'failing', consecutiveFailures: 1 });
    expect((await production.get(auth(), id)).needsHttpsUrl).toBe(true);

    // The next retry is an hour away (this worker's schedule), and it is not sent in plaintext then either.
    expect(await worker.tick()).toBe(0);

    const fixed = await production.update(auth(), id, { url: `https://127.0.0.1:${(tls.address() as AddressInfo).port}/hooks` });
    expect(fixed.needsHttpsUrl).toBe(false);
    // The new URL is tried at once, not an hour later. The test's receiver has a self-signed
    // certificate: trusted for this one delivery only.
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      expect(await worker.tick()).toBe(1);
    } finally {
      delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    }
    expect(overTls).toHaveLength(1);
    expect(JSON.parse(overTls[0]!)).toMatchObject({ type: 'suppression.added', data: { email: 'plaintext@contoso.test' } });
    const after = await production.deliveries(auth(), id, { limit: 10 });
    expect(after.deliveries[0]).toMatchObject({ status: 'delivered', lastError: null });
    expect(after.deliveries[0]!.log.map((a) => a.outcome)).toEqual(['https_required', 'delivered']);
    expect((await production.get(auth(), id)).status).toBe('healthy');
    expect(plain.received).toHaveLength(0);
  });

  it('a delivery in flight when its endpoint gets a new URL: due at once after its attempt at the old URL ends, which does not count against the new one', async () => {
    const repo = createWebhooksRepo(app.database.db);
    const member = await signUp(app);
    const service = createWebhooksService({ repo, cipher: createTokenCipher(app.config.tokenEncryptionKeys), allowPrivateTargets: true, maxEndpointsPerWorkspace: 20, secretGraceMs: 0 });
    const memberAuth = { userId: member.userId, workspaceId: member.workspaceId, role: 'owner' as const };
    // Retries an hour apart; the old receiver holds the request until the sender gives up (1 s).
    const worker = createDeliveryWorker({
      repo,
      cipher: createTokenCipher(app.config.tokenEncryptionKeys),
      send: createWebhookSender({ timeoutMs: 1_000, maxResponseBytes: 1024, allowPrivateTargets: true }),
      logger: createLogger('silent'),
      workerId: 'url-change-in-flight',
      timeoutMs: 1_000,
      retryBaseMs: 3_600_000,
      retryWindowMs: 24 * 3_600_000,
      disableAfterFailures: 1,
      disableAfterMs: 0,
    });
    const old = await startWebhookReceiver([{ hangMs: 5_000 }]);
    const fixed = await startWebhookReceiver();
    try {
      const created = await app.api('POST', '/api/webhooks', { token: member.token, json: { url: old.url, eventTypes: ['suppression.added'] } });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      expect((await app.api('POST', '/api/suppressions', { token: member.token, json: { email: 'in-flight@contoso.test' } })).status).toBe(201);

      const ticking = worker.tick();
      while (old.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      // The URL changes while the attempt at the old one is held.
      expect((await app.api('PATCH', `/api/webhooks/${id}`, { token: member.token, json: { url: fixed.url } })).status).toBe(200);
      expect(await ticking).toBe(1);

      // What it is owed goes to the new URL now, not at the retry an hour away; the old URL's
      // timeout neither marks the new one failing nor disables it (one failure disables here).
      expect((await service.get(memberAuth, id)).status).not.toBe('disabled_after_failures');
      expect(await worker.tick()).toBe(1);
      expect(fixed.delivered()).toMatchObject([{ type: 'suppression.added', data: { email: 'in-flight@contoso.test' } }]);
      const log = await service.deliveries(memberAuth, id, { limit: 10 });
      expect(log.deliveries[0]).toMatchObject({ status: 'delivered', attempts: 2 });
      expect(log.deliveries[0]!.log.map((a) => a.outcome)).toEqual(['timeout', 'delivered']);
      expect(await service.get(memberAuth, id)).toMatchObject({ status: 'healthy', consecutiveFailures: 0, enabled: true });
    } finally {
      await old.close();
      await fixed.close();
    }
  });

  it('a delivery still owed to an http:// endpoint when the retry window ends is failed, with the reason in the log', async () => {
    const worker = productionWorker('https-required-window', 20, 0);
    const other = await signUp(app);
    const created = await app.api('POST', '/api/webhooks', { token: other.token, json: { url: plain.url, eventTypes: ['suppression.added'] } });
    expect((await app.api('POST', '/api/suppressions', { token: other.token, json: { email: 'window@contoso.test' } })).status).toBe(201);
    expect(await worker.tick()).toBe(1);
    const log = await app.api('GET', `/api/webhooks/${created.body.id}/deliveries`, { token: other.token });
    expect(log.body.deliveries[0]).toMatchObject({ status: 'failed', lastError: 'https_required' });
    expect(log.body.deliveries[0].log).toMatchObject([{ outcome: 'https_required' }]);
    expect(plain.received).toHaveLength(0);
  });
});
