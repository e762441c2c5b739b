import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, constants, openSync, promises as fsp, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, verifyPassword } from '../../src/auth/passwords.js';
import { createTokenCipher } from '../../src/gmail/token-cipher.js';
import { createWebhookSender } from '../../src/webhooks/sender.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';
import { createWebhooksService } from '../../src/webhooks/webhooks.service.js';
import { startFakeDns, type FakeDns } from '../helpers/fake-dns.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * Webhook names are resolved off libuv's thread pool when the SSRF guard is on (production).
 * `dns.lookup` is getaddrinfo on that pool (4 threads, shared with file I/O and the scrypt of
 * every password check): a few endpoints whose DNS hung held every thread for the resolver's
 * timeout and stalled the whole process. Here the pool is really held (reads of a FIFO nobody
 * writes block a thread each in open()), or the endpoint's DNS really never answers (a UDP
 * server of the test's own), and the guard's resolution and the password checks go on.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let receiver: WebhookReceiver;
let dns: FakeDns;
let silentDns: FakeDns;

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
  receiver = await startWebhookReceiver();
  dns = await startFakeDns({
    'api.customer.test': ['93.184.215.14'],
    'rebind.customer.test': ['127.0.0.1'],
    'servfail.customer.test': 'servfail',
    'refused.customer.test': 'refused',
  });
  silentDns = await startFakeDns({}, { silent: true });
}, 60_000);
afterAll(async () => {
  await dns?.close();
  await silentDns?.close();
  await receiver?.close();
  await app?.close();
});

const auth = () => ({ userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' as const });
/** The production service (private targets refused) over the test's database, resolving through `servers`. */
const productionService = (dnsOptions: Parameters<typeof createWebhooksService>[0]['dns']) =>
  createWebhooksService({
    repo: createWebhooksRepo(app.database.db),
    cipher: createTokenCipher(app.config.tokenEncryptionKeys),
    allowPrivateTargets: false,
    maxEndpointsPerWorkspace: 1000,
    secretGraceMs: 0,
    dns: dnsOptions,
  });

/** Holds every thread of libuv's pool (and more) until released: each read blocks in open() of a FIFO with no writer. */
async function holdThreadPool() {
  const fifo = path.join(tmpdir(), `inboxtrail-pool-${process.pid}-${Date.now()}`);
  execFileSync('mkfifo', [fifo]);
  const reads = Array.from({ length: (Number(process.env.UV_THREADPOOL_SIZE) || 4) + 2 }, () => fsp.readFile(fifo));
  await new Promise((resolve) => setTimeout(resolve, 100));
  let settled = 0;
  for (const read of reads) void read.finally(() => (settled += 1));
  return async () => {
    // Opened for writing on this thread (the pool is full), without blocking: each open waiting
    // returns and reads EOF; reads queued behind them open next, so again until all are done.
    while (settled < reads.length) {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader has it open right now.
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    unlinkSync(fifo);
  };
}

/** Resolves with the value, or with 'stalled' after `ms`. */
const within = <T>(work: Promise<T>, ms: number) => Promise.race([work, new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), ms))]);

describe('webhook name resolution off the thread pool', () => {
  it('with every pool thread held, the guard still resolves names at save and at connect, and still refuses one that leads to loopback', async () => {
    const sender = createWebhookSender({ timeoutMs: 2_000, maxResponseBytes: 1024, allowPrivateTargets: false, dns: { servers: [dns.server] } });
    const service = productionService({ servers: [dns.server] });
    const release = await holdThreadPool();
    try {
      const started = Date.now();
      // A name re-pointed at this host: refused at connect, on the address resolved, without connecting.
      expect(await within(sender(`http://rebind.customer.test:${receiver.port}/hooks`, '{}', {}), 1_500)).toMatchObject({ outcome: 'refused_target' });
      // A public name is taken at save (nothing connects then).
      const created = await within(service.create(auth(), { url: 'https://api.customer.test/in', eventTypes: ['open'] }), 1_500);
      expect(created).toMatchObject({ url: 'https://api.customer.test/in' });
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await release();
    }
    expect(receiver.received).toHaveLength(0);
    expect(dns.queries).toEqual(expect.arrayContaining(['A rebind.customer.test', 'AAAA rebind.customer.test', 'A api.customer.test']));
  });

  it('a host DNS has no address for is refused with a 422 that says it could not be resolved, not that it is private; a private one still says so', async () => {
    const service = productionService({ servers: [dns.server] });
    const unknown = await service.create(auth(), { url: 'https://no-such-host.customer.test/in', eventTypes: ['open'] }).catch((error: unknown) => error);
    expect(unknown).toMatchObject({ status: 422, code: 'webhook_target_not_allowed', details: [{ field: 'url', message: 'host must resolve in DNS' }] });
    expect((unknown as Error).message).toMatch(/could not be resolved: DNS has no address for no-such-host\.customer\.test/);
    expect((unknown as Error).message).not.toMatch(/private|loopback/);
    // Changing an endpoint's URL goes through the same check.
    const created = await service.create(auth(), { url: 'https://api.customer.test/unknown-host-case', eventTypes: ['open'] });
    const patched = await service.update(auth(), created.id, { url: 'https://no-such-host.customer.test/in' }).catch((error: unknown) => error);
    expect((patched as Error).message).toMatch(/could not be resolved/);
    expect((await service.get(auth(), created.id)).url).toBe('https://api.customer.test/unknown-host-case');
    const loopback = await service.create(auth(), { url: 'https://rebind.customer.test/in', eventTypes: ['open'] }).catch((error: unknown) => error);
    expect(loopback).toMatchObject({ status: 422, code: 'webhook_target_not_allowed', details: [{ field: 'url', message: 'must reach a public address' }] });
    expect((loopback as Error).message).toMatch(/private networks/);
  });

  it('an endpoint whose DNS never answers is refused after a bounded time with a clear 422, and password checks meanwhile finish at once', async () => {
    const service = productionService({ servers: [silentDns.server], tryTimeoutMs: 200, tries: 1, deadlineMs: 1_500 });
    const sender = createWebhookSender({ timeoutMs: 5_000, maxResponseBytes: 1024, allowPrivateTargets: false, dns: { servers: [silentDns.server], tryTimeoutMs: 200, tries: 1, deadlineMs: 1_500 } });
    const stored = await hashPassword('correct horse battery staple');
    const started = Date.now();
    // More hanging names than the pool has threads, at save and at delivery.
    const saves = Array.from({ length: 6 }, (_, i) => service.create(auth(), { url: `https://hangs-${i}.customer.test/in`, eventTypes: ['open'] }).catch((error: unknown) => error));
    const attempts = Array.from({ length: 6 }, (_, i) => sender(`https://hangs-send-${i}.customer.test/in`, '{}', {}));
    await new Promise((resolve) => setTimeout(resolve, 150));
    const checks = Array.from({ length: 4 }, () => verifyPassword('correct horse battery staple', stored));
    // Bounds with room for a loaded 2-core host (a CI run beside other work took 1.24 s here):
    // lookups that held the pool's threads would hold them for the system resolver's timeouts
    // (5 s a try), far past these.
    expect(await within(Promise.all(checks), 3_000)).toEqual([true, true, true, true]);
    expect(Date.now() - started).toBeLessThan(3_200);

    for (const refused of await Promise.all(saves)) {
      expect(refused).toMatchObject({ status: 422, code: 'webhook_target_not_allowed', details: [{ field: 'url' }] });
      expect((refused as Error).message).toMatch(/did not resolve in time/);
    }
    for (const result of await Promise.all(attempts)) expect(result.outcome).toBe('timeout');
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(4_000);
    expect(silentDns.queries.filter((q) => q.startsWith('A hangs-'))).toHaveLength(12);
  });

  it('a lookup that failed (SERVFAIL, REFUSED, the resolver refusing connections) is refused at save as a DNS failure to retry, not a missing name; at delivery it is a network error', async () => {
    // A port nothing listens on: the resolver's query is refused (ICMP port unreachable).
    const closed = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => closed.bind(0, '127.0.0.1', resolve));
    const closedServer = `127.0.0.1:${closed.address().port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const cases = [
      { servers: [dns.server], host: 'servfail.customer.test', code: 'ESERVFAIL' },
      { servers: [dns.server], host: 'refused.customer.test', code: 'EREFUSED' },
      { servers: [closedServer], host: 'api.customer.test', code: 'ECONNREFUSED' },
    ];
    for (const { servers, host, code } of cases) {
      const options = { servers, tryTimeoutMs: 500, tries: 1 };
      const refused = await productionService(options).create(auth(), { url: `https://${host}/in`, eventTypes: ['open'] }).catch((error: unknown) => error);
      // Before: "could not be resolved: DNS has no address for …", `host must resolve in DNS`.
      expect(refused, code).toMatchObject({ status: 422, code: 'webhook_target_not_allowed', details: [{ field: 'url', message: 'DNS lookup failed; try again' }] });
      expect((refused as Error).message).toBe(`The webhook URL host could not be checked: DNS lookup failed for ${host} (${code}); try again`);
      const sender = createWebhookSender({ timeoutMs: 2_000, maxResponseBytes: 1024, allowPrivateTargets: false, dns: options });
      expect(await sender(`https://${host}/in`, '{}', {}), code).toMatchObject({ outcome: 'network_error' });
    }
    expect(dns.queries).toEqual(expect.arrayContaining(['A servfail.customer.test', 'A refused.customer.test']));
  });
});
