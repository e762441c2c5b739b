import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * A member's removal ends what they made there: API keys and Gmail access grants are revoked,
 * webhook endpoints they vouch for are turned off. Each was checked only when the request began,
 * so one made while the removal committed survived it (an attacker's findings): a key or a grant
 * that came back when the person was invited again, an endpoint streaming the workspace's data
 * to a former admin's server. On the server the races are real; on PGlite they run in turn.
 */
let app: TestApp;
let receiver: WebhookReceiver;
const PASSWORD = 'a long enough password';
const TRIES = process.env.TEST_DATABASE_URL ? 12 : 3;

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true' } });
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await receiver?.close();
  await app?.close();
});

async function invite(owner: { token: string }, email: string, role: 'admin' | 'member') {
  const invitation = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  expect(invitation.status, invitation.text).toBe(201);
  const accepted = await acceptInvitation(app, { token: invitation.body.token, password: PASSWORD });
  expect(accepted.status, accepted.text).toBe(201);
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string };
}

describe('what a removed member made stays ended', () => {
  it('an API key made while its creator is removed is refused or revoked, and never works again after a re-invite', async () => {
    const owner = await signUp(app);
    const made: { key: string; email: string }[] = [];
    for (let i = 0; i < TRIES; i++) {
      const email = `key-racer-${i}@example.com`;
      const admin = await invite(owner, email, 'admin');
      const results = await Promise.all([
        ...Array.from({ length: 3 }, (_, j) => app.api('POST', '/api/api-keys', { token: admin.token, json: { name: `k${j}`, scopes: ['admin'] } })),
        app.api('DELETE', `/api/members/${admin.userId}`, { token: owner.token }),
      ]);
      expect(results[3]!.status).toBe(204);
      for (const created of results.slice(0, 3)) {
        expect([201, 401, 403]).toContain(created.status);
        if (created.status === 201) made.push({ key: created.body.key, email });
      }
      const keys = (await app.api('GET', '/api/api-keys', { token: owner.token })).body.apiKeys as { createdBy: string; revokedAt: string | null }[];
      expect(keys.filter((k) => k.createdBy === admin.userId && k.revokedAt === null)).toEqual([]);
    }
    const onePerPerson = [...new Map(made.map((m) => [m.email, m])).values()];
    for (const { key, email } of onePerPerson.slice(0, 2)) {
      expect((await app.api('GET', '/api/me', { token: key })).status).toBe(401);
      const back = await invite(owner, email, 'member');
      expect(back.userId).toBeTruthy();
      expect((await app.api('GET', '/api/me', { token: key })).status).toBe(401);
    }
  });

  it('a key from an earlier membership stays dead after a re-invite, even if nothing revoked it', async () => {
    const owner = await signUp(app);
    const admin = await invite(owner, 'earlier-membership@example.com', 'admin');
    const key = await app.api('POST', '/api/api-keys', { token: admin.token, json: { name: 'old', scopes: ['read'] } });
    expect(key.status).toBe(201);
    expect((await app.api('DELETE', `/api/members/${admin.userId}`, { token: owner.token })).status).toBe(204);
    // As if the revocation had been missed (a race, a bug, a restore from backup).
    await app.database.db.execute(sql`update api_keys set revoked_at = null where id = ${key.body.id}::uuid`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await invite(owner, 'earlier-membership@example.com', 'member');
    expect((await app.api('GET', '/api/me', { token: key.body.key })).status).toBe(401);
  });

  it('P-03 a grant made while its grantee is removed is refused or revoked: invited back, they cannot read the message', async () => {
    const owner = await signUp(app);
    const mailbox = await connectedMailbox(app, owner.token, 'grantor-boss@corp.example', { sync: true });
    app.sandbox.control.createMailbox({ email: 'partner-x@else.example' });
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: mailbox.id, to: 'partner-x@else.example', subject: 'Merger terms', text: 'x' } });
    expect(sent.status).toBe(201);
    const expiresAt = new Date(Date.now() + 7 * 86_400_000).toISOString();
    let granted: { email: string } | undefined;
    for (let i = 0; i < TRIES; i++) {
      const email = `grant-racer-${i}@example.com`;
      const member = await invite(owner, email, 'member');
      const [grant, removal] = await Promise.all([
        app.api('POST', '/api/grants', { token: owner.token, json: { messageId: sent.body.id, granteeUserId: member.userId, expiresAt } }),
        app.api('DELETE', `/api/members/${member.userId}`, { token: owner.token }),
      ]);
      expect(removal.status).toBe(204);
      expect([201, 422]).toContain(grant.status);
      if (grant.status === 422) expect(grant.body.error.code).toBe('grantee_not_member');
      const given = (await app.api('GET', '/api/grants', { token: owner.token })).body;
      const rows = [...(given.given ?? []), ...(given.grants ?? [])] as { granteeUserId: string; status: string }[];
      expect(rows.filter((g) => g.granteeUserId === member.userId && g.status === 'active')).toEqual([]);
      if (grant.status === 201) granted ??= { email };
    }
    if (granted) {
      const back = await invite(owner, granted.email, 'member');
      const content = await app.api('GET', `/api/messages/${sent.body.id}/content?basis=grant`, { token: back.token });
      expect(content.status).not.toBe(200);
    }
  });

  it('the webhook endpoints a removed admin vouches for are turned off with the removal, audited; an admin turning one on vouches for it', async () => {
    const owner = await signUp(app);
    const admin = await invite(owner, 'hook-admin@example.com', 'admin');
    const theirs = await app.api('POST', '/api/webhooks', { token: admin.token, json: { url: receiver.url, eventTypes: ['suppression.added'] } });
    expect(theirs.status).toBe(201);
    expect(theirs.body.vouchedBy).toBe(admin.userId);
    const owners = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: `${receiver.url}/owner`, eventTypes: ['suppression.added'] } });
    // The admin points the owner's endpoint at their own server: it is now theirs to answer for.
    const repointed = await app.api('PATCH', `/api/webhooks/${owners.body.id}`, { token: admin.token, json: { url: `${receiver.url}/mine` } });
    expect(repointed.body.vouchedBy).toBe(admin.userId);
    const untouched = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: `${receiver.url}/kept`, eventTypes: ['suppression.added'] } });

    expect((await app.api('DELETE', `/api/members/${admin.userId}`, { token: owner.token })).status).toBe(204);
    const listed = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints as { id: string; enabled: boolean; disabledAt: string | null }[];
    const byId = new Map(listed.map((e) => [e.id, e]));
    expect(byId.get(theirs.body.id)).toMatchObject({ enabled: false, disabledAt: expect.any(String) });
    expect(byId.get(owners.body.id)).toMatchObject({ enabled: false });
    expect(byId.get(untouched.body.id)).toMatchObject({ enabled: true, disabledAt: null });
    const audit = await app.database.db.execute(
      sql`select subject_id, detail from audit_log where action = 'webhook.endpoint_disabled' and workspace_id = ${owner.workspaceId}::uuid order by subject_id`,
    );
    const audited = ((audit as { rows?: unknown[] }).rows ?? audit) as { subject_id: string; detail: { reason: string; userId: string } }[];
    expect(audited.map((a) => a.subject_id).sort()).toEqual([theirs.body.id, owners.body.id].sort());
    expect(audited.every((a) => a.detail.reason === 'member_removed' && a.detail.userId === admin.userId)).toBe(true);

    // Nothing new is delivered to it; the owner turning it back on vouches for it.
    await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'after-removal@example.com' } });
    const deliveredNow = () => receiver.delivered().filter((d) => d.data.email === 'after-removal@example.com').length;
    for (let i = 0; i < 40 && deliveredNow() === 0; i++) {
      await app.services.webhookDelivery.tick();
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    for (let i = 0; i < 3; i++) await app.services.webhookDelivery.tick();
    expect(deliveredNow()).toBe(1); // to the endpoint nobody removed vouches for
    const reenabled = await app.api('PATCH', `/api/webhooks/${theirs.body.id}`, { token: owner.token, json: { enabled: true } });
    expect(reenabled.body).toMatchObject({ enabled: true, vouchedBy: owner.userId });
  });

  it('a request authenticated before its member\'s removal and run after it makes, re-enables or repoints nothing', async () => {
    const owner = await signUp(app);
    const admin = await invite(owner, 'stale-admin@example.com', 'admin');
    const hook = await app.api('POST', '/api/webhooks', { token: admin.token, json: { url: `${receiver.url}/stale`, eventTypes: ['suppression.added'] } });
    const stale = { userId: admin.userId, workspaceId: owner.workspaceId, role: 'admin' as const };
    expect((await app.api('DELETE', `/api/members/${admin.userId}`, { token: owner.token })).status).toBe(204);
    // What the routes would run for a request that passed authentication a moment before the removal committed.
    await expect(app.services.webhooks.update(stale, hook.body.id, { enabled: true })).rejects.toMatchObject({ status: 403 });
    // Even on an endpoint read as on already: the removal may turn it off between that read and the write.
    const owners = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: `${receiver.url}/owners`, eventTypes: ['suppression.added'] } });
    await expect(app.services.webhooks.update(stale, owners.body.id, { enabled: true })).rejects.toMatchObject({ status: 403 });
    await expect(app.services.webhooks.update(stale, hook.body.id, { url: `${receiver.url}/elsewhere` })).rejects.toMatchObject({ status: 403 });
    await expect(app.services.webhooks.create(stale, { url: `${receiver.url}/new`, eventTypes: ['suppression.added'] })).rejects.toMatchObject({ status: 403 });
    await expect(app.services.apiKeys.create(stale, { name: 'late', scopes: ['read'] })).rejects.toMatchObject({ status: 403 });
    const endpoint = await app.api('GET', `/api/webhooks/${hook.body.id}`, { token: owner.token });
    expect(endpoint.body).toMatchObject({ enabled: false, url: `${receiver.url}/stale` });
  });

  it('an endpoint made while its creator is removed is refused or turned off', async () => {
    const owner = await signUp(app);
    for (let i = 0; i < TRIES; i++) {
      const admin = await invite(owner, `hook-racer-${i}@example.com`, 'admin');
      const [created, removal] = await Promise.all([
        app.api('POST', '/api/webhooks', { token: admin.token, json: { url: `${receiver.url}/race${i}`, eventTypes: ['suppression.added'] } }),
        app.api('DELETE', `/api/members/${admin.userId}`, { token: owner.token }),
      ]);
      expect(removal.status).toBe(204);
      expect([201, 401, 403]).toContain(created.status);
      const listed = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints as { url: string; enabled: boolean }[];
      expect(listed.filter((e) => e.url === `${receiver.url}/race${i}` && e.enabled)).toEqual([]);
    }
  });
});
