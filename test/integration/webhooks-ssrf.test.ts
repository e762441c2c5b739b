import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createWebhookSender } from '../../src/webhooks/sender.js';
import { isBlockedAddress } from '../../src/webhooks/target-guard.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';
import { createWebhooksService } from '../../src/webhooks/webhooks.service.js';
import { createTokenCipher } from '../../src/gmail/token-cipher.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { signUp, startTestApp, TEST_ENV, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * The SSRF guard (issue 12). The app here runs with the production rule — private targets
 * refused — which is the default and which NODE_ENV=production enforces (the last test):
 * no webhook reaches loopback, link-local, private or unique-local addresses, by literal
 * IP, by a name resolving to one (checked at connect time, on the address connected to),
 * or by redirect.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let receiver: WebhookReceiver;

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_TIMEOUT_MS: '400', WEBHOOKS_RETRY_BASE_SECONDS: '0.02' } });
  owner = await signUp(app);
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await receiver?.close();
  await app?.close();
});

const guarded = createWebhookSender({ timeoutMs: 400, maxResponseBytes: 64 * 1024, allowPrivateTargets: false });
const unguarded = createWebhookSender({ timeoutMs: 400, maxResponseBytes: 64 * 1024, allowPrivateTargets: true });

describe('SSRF guard', () => {
  it.each([
    'http://127.0.0.1/hook',
    'http://127.1.2.3:8080/hook',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::1]/hook',
    'http://[::ffff:127.0.0.1]/hook',
    'http://[::ffff:169.254.169.254]/hook',
    'http://0.0.0.0/hook',
    'http://2130706433/hook', // 127.0.0.1 written as one number
    'http://0x7f.1/hook',
    'http://10.1.2.3/hook',
    'http://172.16.0.1/hook',
    'http://192.168.1.1/hook',
    'http://100.64.0.1/hook',
    'http://[fd00::1]/hook',
    'http://[fe80::1]/hook',
    'http://[64:ff9b::7f00:1]/hook',
    'https://[::ffff:0:7f00:1]/hook', // v4-translated 127.0.0.1 (an attacker's finding)
    'http://localhost/hook',
    'http://vm/hook', // /etc/hosts: 127.0.0.1
    'http://nothing-here.invalid/hook',
  ])('an endpoint at %s is refused (422) and nothing is created', async (url) => {
    const res = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url, eventTypes: ['open'] } });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('webhook_target_not_allowed');
    expect((await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints.filter((e: { url: string }) => e.url.includes('/hook'))).toEqual([]);
  });

  it('changing an endpoint to a private URL is refused too', async () => {
    const created = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: 'https://93.184.215.14/in', eventTypes: ['suppression.added'] } });
    expect(created.status).toBe(201);
    const patched = await app.api('PATCH', `/api/webhooks/${created.body.id}`, { token: owner.token, json: { url: 'http://169.254.169.254/' } });
    expect(patched.status).toBe(422);
    expect((await app.api('GET', `/api/webhooks/${created.body.id}`, { token: owner.token })).body.url).toBe('https://93.184.215.14/in');
    await app.api('DELETE', `/api/webhooks/${created.body.id}`, { token: owner.token });
  });

  it('at delivery, a URL that now leads to a private address (DNS rebinding) is refused before any connection', async () => {
    const created = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: 'https://93.184.215.14/in', eventTypes: ['suppression.added'] } });
    // As if its name had been re-pointed at this host after the check on save.
    await app.database.db.execute(sql`update webhook_endpoints set url = ${`http://localhost:${receiver.port}/hooks`} where id = ${created.body.id}::uuid`);
    await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'rebind@contoso.test' } });
    await app.services.webhookDelivery.tick();
    const log = await app.api('GET', `/api/webhooks/${created.body.id}/deliveries`, { token: owner.token });
    expect(log.body.deliveries[0].log).toMatchObject([{ attempt: 1, outcome: 'refused_target', responseStatus: null }]);
    expect(receiver.received).toHaveLength(0);
  });

  it.each([
    (port: number) => `http://127.0.0.1:${port}/hooks`,
    (port: number) => `http://[::ffff:127.0.0.1]:${port}/hooks`,
    (port: number) => `http://localhost:${port}/hooks`,
    (port: number) => `http://api.localhost:${port}/hooks`,
  ])('the sender refuses %s without connecting', async (target) => {
    const result = await guarded(target(receiver.port), '{}', {});
    expect(result.outcome).toBe('refused_target');
    expect(receiver.received).toHaveLength(0);
  });

  it('the guard asks DNS only (off the thread pool): a name only /etc/hosts knows (vm → 127.0.0.1) does not resolve and is not connected to', async () => {
    const result = await guarded(`http://vm:${receiver.port}/hooks`, '{}', {});
    expect(result.outcome).toBe('network_error');
    expect(receiver.received).toHaveLength(0);
  });

  it('never follows a redirect, to the metadata address or anywhere else', async () => {
    const elsewhere = await startWebhookReceiver();
    const redirecting = await startWebhookReceiver([{ redirect: 'http://169.254.169.254/latest/meta-data/' }, { redirect: elsewhere.url }]);
    try {
      expect(await unguarded(redirecting.url, '{}', {})).toMatchObject({ outcome: 'redirect_not_followed', responseStatus: 302 });
      expect(await unguarded(redirecting.url, '{}', {})).toMatchObject({ outcome: 'redirect_not_followed', responseStatus: 302 });
      expect(redirecting.received).toHaveLength(2);
      expect(elsewhere.received).toHaveLength(0);
    } finally {
      await elsewhere.close();
      await redirecting.close();
    }
  });

  it('gives up at the timeout, and reads at most the response cap', async () => {
    const hanging = await startWebhookReceiver([{ hangMs: 5_000 }]);
    const chatty = createServer((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 97);
      // Far more than the cap, as fast as the socket takes it.
      const pump = () => {
        while (res.write(chunk)) if (res.writableLength > 50 * 1024 * 1024) return;
      };
      res.on('drain', pump);
      pump();
    });
    chatty.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => chatty.once('listening', () => resolve()));
    try {
      const slow = await unguarded(hanging.url, '{}', {});
      expect(slow.outcome).toBe('timeout');
      expect(slow.latencyMs).toBeGreaterThanOrEqual(390);
      expect(slow.latencyMs).toBeLessThan(3_000);
      const started = Date.now();
      const big = await unguarded(`http://127.0.0.1:${(chatty.address() as AddressInfo).port}/`, '{}', {});
      expect(big).toMatchObject({ outcome: 'delivered', responseStatus: 200 });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      chatty.closeAllConnections();
      chatty.close();
      await hanging.close();
    }
  });

  it.each([
    ['127.0.0.1', true],
    ['169.254.169.254', true],
    ['0.0.0.0', true],
    ['::', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:10.0.0.1', true],
    ['fd12:3456::1', true],
    ['fe80::abcd', true],
    ['2002:7f00:1::', true],
    ['224.0.0.1', true],
    ['93.184.215.14', false],
    ['8.8.8.8', false],
    ['2606:4700:4700::1111', false],
  ])('isBlockedAddress(%s) is %s', (address, blocked) => {
    expect(isBlockedAddress(address)).toBe(blocked);
  });

  it('production refuses WEBHOOKS_ALLOW_PRIVATE_TARGETS=true, and private targets are off by default', () => {
    const production = {
      ...TEST_ENV,
      NODE_ENV: 'production',
      DATA_DIR: '/nonexistent-inboxtrail',
      GOOGLE_CLIENT_ID: 'client.apps.googleusercontent.com',
      GOOGLE_CLIENT_SECRET: 'client-secret',
      GOOGLE_REDIRECT_URI: 'https://mail.example.com/api/gmail/callback',
    };
    expect(() => loadConfig({ ...production, WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...production, WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true' })).toThrow(/WEBHOOKS_ALLOW_PRIVATE_TARGETS/);
    expect(loadConfig(production).webhooks.allowPrivateTargets).toBe(false);
    expect(app.config.webhooks.allowPrivateTargets).toBe(false);
    expect(loadConfig(production).webhooks.requireHttps).toBe(true);
    expect(app.config.webhooks.requireHttps).toBe(false);
  });

  it('in production an http:// endpoint is refused (422, nothing created or changed); https:// is taken', async () => {
    // The README promised an HTTPS endpoint while http:// was accepted everywhere: events carry
    // recipients' addresses. The production service, over this test's database.
    const production = createWebhooksService({
      repo: createWebhooksRepo(app.database.db),
      cipher: createTokenCipher(app.config.tokenEncryptionKeys),
      allowPrivateTargets: false,
      requireHttps: true,
      maxEndpointsPerWorkspace: 20,
      secretGraceMs: 0,
    });
    const auth = { userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' as const };
    const count = async () => Number(rowsOf<{ n: number }>(await app.database.db.execute(sql`select count(*)::int as n from webhook_endpoints where workspace_id = ${owner.workspaceId}::uuid`))[0]!.n);
    const before = await count();
    await expect(production.create(auth, { url: 'http://93.184.215.14/hook', eventTypes: ['open'] })).rejects.toMatchObject({ code: 'webhook_target_not_allowed', details: [{ field: 'url' }] });
    expect(await count()).toBe(before);
    const created = await production.create(auth, { url: 'https://93.184.215.14/hook', eventTypes: ['open'] });
    expect(await count()).toBe(before + 1);
    await expect(production.update(auth, created.id, { url: 'http://93.184.215.14/other' })).rejects.toMatchObject({ code: 'webhook_target_not_allowed' });
    const [row] = rowsOf<{ url: string }>(await app.database.db.execute(sql`select url from webhook_endpoints where id = ${created.id}::uuid`));
    expect(row!.url).toBe('https://93.184.215.14/hook');
  });
});
