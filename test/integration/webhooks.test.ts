import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, webhookDeliveries, webhookDeliveryAttempts, webhookEvents } from '../../src/db/schema.js';
import { createSuppressionRepo } from '../../src/suppression/suppression.repo.js';
import { WEBHOOK_EVENT_TYPES } from '../../src/webhooks/events.js';
import { verifySignatureHeader } from '../../src/webhooks/signature.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import type { Db } from '../../src/db/connect.js';
import { createTokenCipher } from '../../src/gmail/token-cipher.js';
import { createLogger } from '../../src/logger.js';
import { createDeliveryWorker } from '../../src/webhooks/delivery-worker.js';
import { createWebhookSender } from '../../src/webhooks/sender.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';

/*
 * Outbound webhooks end to end (issue 12): real receivers over HTTP that fail, time out
 * and answer 500; the app's own delivery worker (driven tick by tick here); the delivery
 * log through the API; disabling, auto-disabling, rotation, redelivery; no event from a
 * rolled-back fact.
 */

const ALL_TYPES = [...WEBHOOK_EVENT_TYPES];

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let receiver: WebhookReceiver;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  app = await startTestApp({
    env: {
      WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true',
      WEBHOOKS_TIMEOUT_MS: '1500',
      WEBHOOKS_RETRY_BASE_SECONDS: '0.02',
      WEBHOOKS_DISABLE_AFTER_FAILURES: '6',
      WEBHOOKS_DISABLE_AFTER_HOURS: '0',
    },
  });
  owner = await signUp(app);
  // Fails twice, times out once, answers 500 once; 200 after that.
  receiver = await startWebhookReceiver([{ status: 503 }, { status: 503 }, { hangMs: 5_000 }, { status: 500 }]);
}, 60_000);
afterAll(async () => {
  await receiver?.close();
  await app?.close();
});

/** Runs the delivery worker until `done()` or the deadline. */
async function deliverUntil(done: () => boolean | Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('deliveries did not finish in time');
    await app.services.webhookDelivery.tick();
    await sleep(25);
  }
}

const createEndpoint = (url: string, eventTypes = ALL_TYPES, token = owner.token) => app.api('POST', '/api/webhooks', { token, json: { url, eventTypes } });

describe('outbound webhooks', () => {
  let endpoint: { id: string; secret: string };
  let firstSecret: string;
  const eventIds: string[] = [];

  it('an owner creates an endpoint; the secret is shown once, stored sealed', async () => {
    const created = await createEndpoint(receiver.url);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ url: receiver.url, enabled: true, status: 'healthy', eventTypes: ALL_TYPES });
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    endpoint = created.body;

    const got = await app.api('GET', `/api/webhooks/${endpoint.id}`, { token: owner.token });
    expect(got.status).toBe(200);
    expect(got.body.secret).toBeUndefined();
    const stored = await app.database.db.execute(sql`select secret_ciphertext from webhook_endpoints where id = ${endpoint.id}::uuid`);
    const sealed = (stored as unknown as { rows: { secret_ciphertext: string }[] }).rows[0]!.secret_ciphertext;
    expect(sealed).not.toContain(endpoint.secret);
    expect(sealed).toMatch(/^v1\./);
    expect(app.logs.join('')).not.toContain(endpoint.secret);
  });

  it('every event arrives despite two failures, a timeout and a 500; every signature verifies; the log tells each attempt', async () => {
    const added = await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'gone@contoso.test' } });
    expect(added.status).toBe(201);
    const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'kim@contoso.test', firstName: 'Kim' } });
    expect(contact.status).toBe(201);
    expect((await app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: owner.token, json: { status: 'opted_in', source: 'web form' } })).status).toBe(201);
    expect((await app.api('DELETE', `/api/suppressions/${added.body.id}`, { token: owner.token, json: { note: 'typo' } })).status).toBe(204);

    const events = await app.database.db.select().from(webhookEvents).where(eq(webhookEvents.workspaceId, owner.workspaceId));
    expect(events.map((e) => e.type).sort()).toEqual(['consent.changed', 'suppression.added', 'suppression.removed']);
    eventIds.push(...events.map((e) => e.id));

    await deliverUntil(() => eventIds.every((id) => receiver.delivered().some((d) => d.id === id)));

    // 3 events, 4 failed attempts before them.
    expect(receiver.received).toHaveLength(7);
    for (const request of receiver.received) {
      expect(verifySignatureHeader(String(request.headers['inboxtrail-signature']), endpoint.secret, request.body)).toBe(true);
      const body = JSON.parse(request.body);
      expect(request.headers['inboxtrail-event-id']).toBe(body.id);
      expect(body.workspaceId).toBe(owner.workspaceId);
    }
    const byType = Object.fromEntries(receiver.delivered().map((d) => [d.type, d]));
    expect(byType['suppression.added']!.data).toMatchObject({ email: 'gone@contoso.test', scope: 'all', reason: 'manual', suppressionId: added.body.id });
    expect(byType['consent.changed']!.data).toEqual({ contactId: contact.body.id, email: 'kim@contoso.test', status: 'opted_in', source: 'web form' });
    expect(byType['suppression.removed']!.data).toMatchObject({ suppressionId: added.body.id });

    const log = await app.api('GET', `/api/webhooks/${endpoint.id}/deliveries`, { token: owner.token });
    expect(log.status).toBe(200);
    expect(log.body.deliveries).toHaveLength(3);
    const attempts = log.body.deliveries.flatMap((d: { log: unknown[] }) => d.log);
    expect(attempts).toHaveLength(7);
    const outcomes = attempts.map((a: { outcome: string; responseStatus: number | null }) => `${a.outcome}:${a.responseStatus}`).sort();
    expect(outcomes).toEqual(['delivered:200', 'delivered:200', 'delivered:200', 'http_error:500', 'http_error:503', 'http_error:503', 'timeout:null'].sort());
    for (const delivery of log.body.deliveries) {
      expect(delivery.status).toBe('delivered');
      expect(delivery.log.map((a: { attempt: number }) => a.attempt)).toEqual(Array.from({ length: delivery.attempts }, (_, i) => i + 1));
      expect(delivery.log.at(-1).outcome).toBe('delivered');
      for (const a of delivery.log) expect(a.latencyMs).toBeGreaterThanOrEqual(0);
    }
    const timedOut = attempts.find((a: { outcome: string }) => a.outcome === 'timeout');
    expect(timedOut.latencyMs).toBeGreaterThanOrEqual(1_490);
    expect((await app.api('GET', `/api/webhooks/${endpoint.id}`, { token: owner.token })).body).toMatchObject({ status: 'healthy', consecutiveFailures: 0 });
  });

  it('redelivers one event on request, with the same event id', async () => {
    const before = receiver.received.length;
    const asked = await app.api('POST', `/api/webhooks/${endpoint.id}/events/${eventIds[0]}/redeliver`, { token: owner.token });
    expect(asked.status).toBe(202);
    expect(asked.body).toMatchObject({ eventId: eventIds[0], status: 'pending', manual: true });
    await deliverUntil(() => receiver.received.length > before);
    expect(JSON.parse(receiver.received.at(-1)!.body).id).toBe(eventIds[0]);
    const unknown = await app.api('POST', `/api/webhooks/${endpoint.id}/events/00000000-0000-4000-8000-000000000000/redeliver`, { token: owner.token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('webhook_event_not_found');
  });

  it('after a rotation both secrets sign during the grace period', async () => {
    const rotated = await app.api('POST', `/api/webhooks/${endpoint.id}/rotate-secret`, { token: owner.token });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(endpoint.secret);
    expect(new Date(rotated.body.previousSecretExpiresAt).getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    const before = receiver.received.length;
    await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'rotated@contoso.test' } });
    await deliverUntil(() => receiver.received.length > before);
    const request = receiver.received.at(-1)!;
    const header = String(request.headers['inboxtrail-signature']);
    expect(header.match(/v1=/g)).toHaveLength(2);
    expect(verifySignatureHeader(header, rotated.body.secret, request.body)).toBe(true);
    expect(verifySignatureHeader(header, endpoint.secret, request.body)).toBe(true);
    expect(verifySignatureHeader(header, 'whsec_someone-else', request.body)).toBe(false);
    firstSecret = endpoint.secret;
    endpoint = rotated.body;
  });

  it('a second rotation inside the grace period keeps every earlier secret signing; two at once both sign', async () => {
    const second = await app.api('POST', `/api/webhooks/${endpoint.id}/rotate-secret`, { token: owner.token });
    expect(second.status).toBe(200);
    const [a, b] = await Promise.all([1, 2].map(() => app.api('POST', `/api/webhooks/${endpoint.id}/rotate-secret`, { token: owner.token })));
    expect([a!.status, b!.status]).toEqual([200, 200]);
    const delivered = async (email: string) => {
      const before = receiver.received.length;
      await app.api('POST', '/api/suppressions', { token: owner.token, json: { email } });
      await deliverUntil(() => receiver.received.length > before);
      const request = receiver.received.at(-1)!;
      return { header: String(request.headers['inboxtrail-signature']), body: request.body };
    };
    const signed = await delivered('rotated-twice@contoso.test');
    // The current secret and the four it replaced, the very first among them.
    expect(signed.header.match(/v1=/g)).toHaveLength(5);
    for (const secret of [firstSecret, endpoint.secret, second.body.secret, a!.body.secret, b!.body.secret]) {
      expect(verifySignatureHeader(signed.header, secret, signed.body)).toBe(true);
    }

    // Past MAX_SECRETS_IN_GRACE (5) replaced secrets, the oldest stops signing first.
    await app.api('POST', `/api/webhooks/${endpoint.id}/rotate-secret`, { token: owner.token });
    const last = await app.api('POST', `/api/webhooks/${endpoint.id}/rotate-secret`, { token: owner.token });
    const capped = await delivered('rotated-often@contoso.test');
    expect(capped.header.match(/v1=/g)).toHaveLength(6);
    expect(verifySignatureHeader(capped.header, last.body.secret, capped.body)).toBe(true);
    expect(verifySignatureHeader(capped.header, endpoint.secret, capped.body)).toBe(true);
    expect(verifySignatureHeader(capped.header, firstSecret, capped.body)).toBe(false);
    endpoint = last.body;
  });

  it('nothing arrives once the endpoint is disabled, not even what was already queued; enabling resumes it', async () => {
    const before = receiver.received.length;
    await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'queued@contoso.test' } });
    const disabled = await app.api('PATCH', `/api/webhooks/${endpoint.id}`, { token: owner.token, json: { enabled: false } });
    expect(disabled.status).toBe(200);
    expect(disabled.body.enabled).toBe(false);
    await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'while-off@contoso.test' } });
    for (let i = 0; i < 5; i += 1) await app.services.webhookDelivery.tick();
    await sleep(100);
    expect(receiver.received.length).toBe(before);

    expect((await app.api('PATCH', `/api/webhooks/${endpoint.id}`, { token: owner.token, json: { enabled: true } })).status).toBe(200);
    await deliverUntil(() => receiver.received.length > before);
    // The one queued before disabling; an event while disabled was never owed to it.
    expect(receiver.delivered().at(-1)!.data.email).toBe('queued@contoso.test');
    expect(receiver.delivered().some((d) => d.data.email === 'while-off@contoso.test')).toBe(false);
  });

  it('an endpoint failing too long is disabled with a notice (status, audit), and gets nothing after that', async () => {
    const failing = await startWebhookReceiver(Array.from({ length: 50 }, () => ({ status: 500 })));
    try {
      const created = await createEndpoint(failing.url, ['suppression.added']);
      for (let i = 0; i < 8; i += 1) await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: `bad${i}@contoso.test` } });
      await deliverUntil(async () => (await app.api('GET', `/api/webhooks/${created.body.id}`, { token: owner.token })).body.enabled === false);
      const after = await app.api('GET', `/api/webhooks/${created.body.id}`, { token: owner.token });
      expect(after.body).toMatchObject({ enabled: false, status: 'disabled_after_failures' });
      expect(after.body.consecutiveFailures).toBeGreaterThanOrEqual(6);
      expect(after.body.disabledAt).toBeTruthy();
      const audit = await app.database.db.select().from(auditLog).where(eq(auditLog.subjectId, created.body.id));
      expect(audit.map((a) => a.action)).toContain('webhook.endpoint_disabled');
      expect(audit.find((a) => a.action === 'webhook.endpoint_disabled')!.actor).toBe('system:webhooks');
      const notice = app.services.accountMailer.outbox!.filter((m) => m.subject.includes('was disabled'));
      expect(notice.map((m) => m.to)).toEqual([owner.email.toLowerCase()]);
      expect(notice[0]!.text).toContain(created.body.id);
      expect(notice[0]!.text).not.toContain('/hooks');

      // Requests sent before the disabling may still be landing on a busy machine.
      await sleep(500);
      const seen = failing.received.length;
      const attempts = async () => (await app.database.db.select().from(webhookDeliveryAttempts).where(eq(webhookDeliveryAttempts.endpointId, created.body.id))).length;
      const logged = await attempts();
      await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'after-disable@contoso.test' } });
      for (let i = 0; i < 5; i += 1) await app.services.webhookDelivery.tick();
      await sleep(100);
      expect(failing.received.length).toBe(seen);
      expect(await attempts()).toBe(logged);
      expect(failing.received.every((r) => r.answered === 500)).toBe(true);
    } finally {
      await failing.close();
    }
  });

  it('a rolled-back fact produces no event; the same write committed produces exactly one', async () => {
    // A listener of its own: events are written only for workspaces with a subscribed, enabled endpoint.
    expect((await createEndpoint(receiver.url, ['suppression.added'])).status).toBe(201);
    const count = async () => (await app.database.db.select().from(webhookEvents).where(eq(webhookEvents.workspaceId, owner.workspaceId))).length;
    const before = await count();
    await expect(
      app.database.db.transaction(async (tx) => {
        await createSuppressionRepo(tx as unknown as Db, createAddressHasher(app.config.privacy.suppressionHashKey)).suppress({ workspaceId: owner.workspaceId, email: 'rolled-back@contoso.test', reason: 'bounce' });
        throw new Error('the fact fails after the suppression was written');
      }),
    ).rejects.toThrow('the fact fails');
    expect(await count()).toBe(before);
    await createSuppressionRepo(app.database.db, createAddressHasher(app.config.privacy.suppressionHashKey)).suppress({ workspaceId: owner.workspaceId, email: 'committed@contoso.test', reason: 'bounce' });
    expect(await count()).toBe(before + 1);
  });
});

describe('retention', () => {
  it('events past WEBHOOKS_EVENT_RETENTION_DAYS go with their deliveries and log, unless a delivery of an enabled endpoint still owes them', async () => {
    const query = async <T>(statement: ReturnType<typeof sql>) => ((await app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
    const [owed] = await query<{ event_id: string }>(sql`select d.event_id from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id and e.enabled
      where d.workspace_id = ${owner.workspaceId}::uuid and d.status = 'pending' limit 1`);
    const [done] = await query<{ event_id: string }>(sql`select event_id from webhook_deliveries d where workspace_id = ${owner.workspaceId}::uuid and status = 'delivered'
      and not exists (select 1 from webhook_deliveries p where p.event_id = d.event_id and p.status = 'pending') limit 1`);
    expect(owed).toBeDefined();
    expect(done).toBeDefined();
    await app.database.db.execute(sql`update webhook_events set created_at = now() - interval '31 days' where id in (${owed!.event_id}::uuid, ${done!.event_id}::uuid)`);
    expect(await app.services.webhookDelivery.purgeExpired(30 * 86_400_000)).toBe(1);
    expect(await query(sql`select id from webhook_events where id = ${done!.event_id}::uuid`)).toEqual([]);
    expect(await query(sql`select id from webhook_deliveries where event_id = ${done!.event_id}::uuid`)).toEqual([]);
    expect(await query(sql`select id from webhook_delivery_attempts where event_id = ${done!.event_id}::uuid`)).toEqual([]);
    expect(await query(sql`select id from webhook_events where id = ${owed!.event_id}::uuid`)).toHaveLength(1);
    // A disabled endpoint is never sent to: what it is owed holds nothing back past the retention (payloads name addresses, P-13).
    const owing = sql`select endpoint_id from webhook_deliveries where event_id = ${owed!.event_id}::uuid and status = 'pending'`;
    const endpoints = await query<{ endpoint_id: string; enabled: boolean }>(sql`select id as endpoint_id, enabled from webhook_endpoints where id in (${owing})`);
    await app.database.db.execute(sql`update webhook_endpoints set enabled = false where id in (${owing})`);
    try {
      expect(await app.services.webhookDelivery.purgeExpired(30 * 86_400_000)).toBe(1);
      expect(await query(sql`select id from webhook_events where id = ${owed!.event_id}::uuid`)).toEqual([]);
    } finally {
      for (const e of endpoints) await app.database.db.execute(sql`update webhook_endpoints set enabled = ${e.enabled} where id = ${e.endpoint_id}::uuid`);
    }
  });
});

describe('several delivery workers', () => {
  it('claim disjoint deliveries: every event is sent once, on its first attempt', async () => {
    const steady = await startWebhookReceiver();
    try {
      const created = await createEndpoint(steady.url, ['suppression.added']);
      for (let i = 0; i < 30; i += 1) await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: `many${i}@contoso.test` } });
      const workers = ['worker-a', 'worker-b', 'worker-c'].map((workerId) =>
        createDeliveryWorker({
          repo: createWebhooksRepo(app.database.db),
          cipher: createTokenCipher(app.config.tokenEncryptionKeys),
          send: createWebhookSender({ timeoutMs: 2_000, maxResponseBytes: 1024, allowPrivateTargets: true }),
          logger: createLogger('silent'),
          workerId,
          ...app.config.webhooks,
          // A long lease: on a loaded machine a short one expires under a slow batch, and the row is (rightly) sent again.
          timeoutMs: 10_000,
        }),
      );
      const owed = async () =>
        (await app.database.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.endpointId, created.body.id))).filter((d) => d.status !== 'delivered').length;
      const deadline = Date.now() + 60_000;
      while ((await owed()) > 0 && Date.now() < deadline) await Promise.all(workers.map((worker) => worker.tick()));
      const ids = steady.received.map((r) => JSON.parse(r.body).id as string);
      expect(ids).toHaveLength(30);
      expect(new Set(ids).size).toBe(30);
      const log = await app.api('GET', `/api/webhooks/${created.body.id}/deliveries?limit=100`, { token: owner.token });
      expect(log.body.deliveries).toHaveLength(30);
      for (const d of log.body.deliveries) expect(d).toMatchObject({ status: 'delivered', attempts: 1 });
      await app.api('DELETE', `/api/webhooks/${created.body.id}`, { token: owner.token });
    } finally {
      await steady.close();
    }
  });
});

describe('/api/webhooks access and input', () => {
  it('members are refused; another workspace sees nothing and hears nothing', async () => {
    const other = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'member-wh@acme.test', role: 'member' } });
    const member = await acceptInvitation(app, { token: invite.body.token, password: 'member password long' });
    expect((await app.api('GET', '/api/webhooks', { token: member.body.token })).status).toBe(403);
    expect((await createEndpoint(receiver.url, ALL_TYPES, member.body.token)).status).toBe(403);

    const mine = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints;
    expect(mine.length).toBeGreaterThan(0);
    expect((await app.api('GET', `/api/webhooks/${mine[0].id}`, { token: other.token })).status).toBe(404);
    expect((await app.api('DELETE', `/api/webhooks/${mine[0].id}`, { token: other.token })).status).toBe(404);
    expect((await app.api('GET', `/api/webhooks/${mine[0].id}/deliveries`, { token: other.token })).status).toBe(404);
    expect((await app.api('GET', '/api/webhooks', { token: other.token })).body.endpoints).toEqual([]);

    const before = await app.database.db.select().from(webhookDeliveries);
    await app.api('POST', '/api/suppressions', { token: other.token, json: { email: 'theirs@contoso.test' } });
    expect(await app.database.db.select().from(webhookDeliveries)).toHaveLength(before.length);
  });

  it.each([
    [{ url: 'not a url', eventTypes: ['open'] }, 'url'],
    [{ url: 'ftp://example.com/x', eventTypes: ['open'] }, 'url'],
    [{ url: 'https://user:pw@example.com/x', eventTypes: ['open'] }, 'url'],
    [{ url: 'https://example.com/x', eventTypes: [] }, 'eventTypes'],
    [{ url: 'https://example.com/x', eventTypes: ['opened'] }, 'eventTypes.0'],
    [{ url: 'https://example.com/x', eventTypes: ['open'], secret: 'mine' }, 'secret'],
  ])('bad input %j is a 400 naming %s, and creates nothing', async (json, field) => {
    const before = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints.length;
    const res = await app.api('POST', '/api/webhooks', { token: owner.token, json });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    expect((await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints).toHaveLength(before);
  });

  it('bad ids and queries are 4xx, never 5xx', async () => {
    expect((await app.api('GET', '/api/webhooks/nope', { token: owner.token })).status).toBe(404);
    const id = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints[0].id;
    expect((await app.api('GET', `/api/webhooks/${id}/deliveries?limit=0`, { token: owner.token })).status).toBe(400);
    expect((await app.api('GET', `/api/webhooks/${id}/deliveries?cursor=zzz`, { token: owner.token })).status).toBe(400);
    expect((await app.api('PATCH', `/api/webhooks/${id}`, { token: owner.token, json: {} })).status).toBe(400);
    expect((await app.api('POST', `/api/webhooks/${id}/events/xyz/redeliver`, { token: owner.token })).status).toBe(404);
  });

  it('deleting an endpoint removes it and its log', async () => {
    const created = await createEndpoint(receiver.url, ['open']);
    expect((await app.api('DELETE', `/api/webhooks/${created.body.id}`, { token: owner.token })).status).toBe(204);
    expect((await app.api('GET', `/api/webhooks/${created.body.id}`, { token: owner.token })).status).toBe(404);
  });
});
