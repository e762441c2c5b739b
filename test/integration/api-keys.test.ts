import { randomUUID } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiKeys, auditLog, consents } from '../../src/db/schema.js';
import { API_ROUTES } from '../../src/http/api-routes.js';
import { authenticatedApiRoutes, expectEveryRouteCovered, routeKey } from '../helpers/routes.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();

async function createKey(scopes: string[], name = `key ${scopes.join('+')}`) {
  const created = await ctx.app.api('POST', '/api/api-keys', { token: ctx.owner.token, json: { name, scopes } });
  expect(created.status).toBe(201);
  return created.body as { id: string; key: string; prefix: string; scopes: string[] };
}

/**
 * What each scope may call, written out by hand (not read from the registry the code uses, so a
 * route given the wrong `access` there fails here): `read` reads, `send` writes CRM data and
 * sends, `admin` administers (and may do everything). `session`: people only — no key may call it.
 * The registry's public routes take no key at all and are not listed. Every authenticated /api
 * route of the registry must have a line here (the first test names any that has none).
 */
const EXPECTED_SCOPE: Record<string, 'read' | 'send' | 'admin' | 'session'> = {
  'GET /api/me': 'read',
  'GET /api/members': 'read',
  'PATCH /api/workspace': 'admin',
  'GET /api/invitations': 'admin',
  'POST /api/invitations': 'admin',
  'DELETE /api/invitations/:id': 'admin',
  'POST /api/api-keys': 'session',
  'GET /api/api-keys': 'session',
  'DELETE /api/api-keys/:id': 'session',
  'GET /api/contacts': 'read',
  'POST /api/contacts': 'send',
  'POST /api/contacts/import': 'send',
  'GET /api/contacts/:id': 'read',
  'PATCH /api/contacts/:id': 'send',
  'DELETE /api/contacts/:id': 'send',
  'GET /api/contacts/:id/consents': 'read',
  'POST /api/contacts/:id/consents': 'send',
  'GET /api/gmail/connect': 'session',
  'GET /api/mailboxes': 'read',
  'PATCH /api/mailboxes/:id': 'admin',
  'DELETE /api/mailboxes/:id': 'admin',
  'POST /api/messages': 'send',
  'GET /api/messages/:id': 'read',
  'GET /api/messages/:id/content': 'session',
  'POST /api/campaigns': 'send',
  'GET /api/campaigns': 'read',
  'GET /api/campaigns/:id': 'read',
  'PATCH /api/campaigns/:id': 'send',
  'POST /api/campaigns/:id/recipients': 'send',
  'POST /api/campaigns/:id/preflight': 'read',
  'POST /api/campaigns/:id/launch': 'send',
  'POST /api/campaigns/:id/pause': 'send',
  'POST /api/campaigns/:id/resume': 'send',
  'POST /api/campaigns/:id/cancel': 'send',
  'GET /api/campaigns/:id/stats': 'read',
  'GET /api/suppressions': 'read',
  'POST /api/suppressions': 'send',
  'DELETE /api/suppressions/:id': 'admin',
  'PATCH /api/members/:id': 'admin',
  'DELETE /api/members/me': 'session',
  'DELETE /api/members/:id': 'admin',
  'POST /api/grants': 'session',
  'GET /api/grants': 'session',
  'DELETE /api/grants/:id': 'session',
  'GET /api/compliance/report': 'admin',
  'PATCH /api/me': 'session',
  'GET /api/campaigns/:id/results.csv': 'read',
  'POST /api/webhooks': 'admin',
  'GET /api/webhooks': 'admin',
  'GET /api/webhooks/:id': 'admin',
  'PATCH /api/webhooks/:id': 'admin',
  'DELETE /api/webhooks/:id': 'admin',
  'POST /api/webhooks/:id/rotate-secret': 'admin',
  'GET /api/webhooks/:id/deliveries': 'admin',
  'POST /api/webhooks/:id/events/:eventId/redeliver': 'admin',
  'POST /api/privacy/delete-account': 'session',
  'DELETE /api/campaigns/:id': 'send',
  'POST /api/me/email/verify': 'session',
  'GET /api/privacy/export': 'session',
  'GET /api/privacy/recipients/export': 'admin',
  'POST /api/privacy/legal-requests': 'session',
  'GET /api/privacy/legal-requests': 'session',
  'GET /api/privacy/legal-requests/:id': 'session',
  'GET /api/privacy/legal-requests/:id/disclosure': 'session',
};

describe('API keys', () => {
  let keys: Record<'read' | 'send' | 'admin', { id: string; key: string }>;
  beforeAll(async () => {
    keys = { read: await createKey(['read']), send: await createKey(['send']), admin: await createKey(['admin']) };
  });

  it('the scope table has an expectation for every authenticated /api route of the registry, and agrees with its access', () => {
    expectEveryRouteCovered('EXPECTED_SCOPE', authenticatedApiRoutes(), Object.keys(EXPECTED_SCOPE));
    const disagreeing = API_ROUTES.filter((r) => routeKey(r) in EXPECTED_SCOPE && EXPECTED_SCOPE[routeKey(r)] !== r.access).map((r) => `${routeKey(r)}: registry ${r.access}, expected ${EXPECTED_SCOPE[routeKey(r)]}`);
    expect(disagreeing).toEqual([]);
  });

  it('every route refuses a key without its scope (403 api_key_scope_missing) and lets one with it through', async () => {
    const failures: string[] = [];
    for (const route of authenticatedApiRoutes()) {
      const needed = EXPECTED_SCOPE[route];
      if (!needed) {
        failures.push(`${route}: no expected scope in EXPECTED_SCOPE`);
        continue;
      }
      const [method, pattern] = route.split(' ') as [string, string];
      // An id nobody has: an allowed call gets as far as the service (404/400), never to a change.
      const path = pattern.replace(':id', randomUUID());
      for (const scope of ['read', 'send', 'admin'] as const) {
        const allowed = needed !== 'session' && (scope === needed || scope === 'admin');
        const csv = path.endsWith('/import') || path.endsWith('/recipients');
        const res = await ctx.app.api(method, path, {
          token: keys[scope].key,
          ...(csv ? { body: 'email\n', headers: { 'content-type': 'text/csv' } } : method === 'GET' ? {} : { json: {} }),
        });
        const refused = res.status === 403 && res.body?.error?.code === 'api_key_scope_missing';
        if (allowed === refused || res.status === 401 || res.status >= 500) failures.push(`${route} with ${scope}: ${res.status} ${res.body?.error?.code ?? ''}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('is shown once, stored only as a hash, and listed without the key; members and keys cannot manage keys', async () => {
    const created = await createKey(['read', 'send'], 'crm sync');
    expect(created.key).toMatch(/^itk_[A-Za-z0-9_-]{43}$/);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    const listed = await ctx.app.api('GET', '/api/api-keys', { token: ctx.owner.token });
    expect(listed.status).toBe(200);
    expect(listed.text).not.toContain(created.key);
    expect(listed.body.apiKeys.find((k: { id: string }) => k.id === created.id)).toMatchObject({ name: 'crm sync', scopes: ['read', 'send'] });
    const [row] = await ctx.app.database.db.select().from(apiKeys).where(eq(apiKeys.id, created.id));
    expect(JSON.stringify(row)).not.toContain(created.key.slice(4));

    const byKey = await ctx.app.api('POST', '/api/api-keys', { token: keys.admin.key, json: { name: 'minted', scopes: ['admin'] } });
    expect([byKey.status, byKey.body.error.code]).toEqual([403, 'api_key_scope_missing']);
    const bad = await ctx.app.api('POST', '/api/api-keys', { token: ctx.owner.token, json: { name: 'x', scopes: ['root'] } });
    expect([bad.status, bad.body.error.code]).toEqual([400, 'validation_failed']);
  });

  it('a member cannot create keys', async () => {
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: `member-${Date.now()}@example.com`, role: 'member' } });
    const member = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a-long-member-password' });
    expect(member.status).toBe(201);
    const refused = await ctx.app.api('POST', '/api/api-keys', { token: member.body.token, json: { name: 'mine', scopes: ['read'] } });
    expect([refused.status, refused.body.error.code]).toEqual([403, 'forbidden']);
  });

  it("removing a member revokes their keys (listed revoked, audited); inviting them back does not bring a key back", async () => {
    const email = `admin-${Date.now()}@example.com`;
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email, role: 'admin' } });
    const admin = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a-long-admin-password' });
    expect(admin.status).toBe(201);
    const created = await ctx.app.api('POST', '/api/api-keys', { token: admin.body.token, json: { name: 'admin key', scopes: ['admin'] } });
    expect(created.status).toBe(201);
    expect((await ctx.app.api('GET', '/api/me', { token: created.body.key })).status).toBe(200);

    expect((await ctx.app.api('DELETE', `/api/members/${admin.body.user.id}`, { token: ctx.owner.token })).status).toBe(204);
    const listed = (await ctx.app.api('GET', '/api/api-keys', { token: ctx.owner.token })).body.apiKeys.find((k: { id: string }) => k.id === created.body.id);
    expect(listed.revokedAt).not.toBeNull();
    const audited = await ctx.app.database.db.select({ detail: auditLog.detail }).from(auditLog).where(and(eq(auditLog.action, 'api_key.revoked'), eq(auditLog.subjectId, created.body.id)));
    expect(audited.map((r) => (r.detail as { reason: string }).reason)).toEqual(['member_removed']);

    const again = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email, role: 'admin' } });
    expect((await acceptInvitation(ctx.app, { token: again.body.token, password: 'a-long-admin-password' })).status).toBe(201);
    const after = await ctx.app.api('GET', '/api/me', { token: created.body.key });
    expect([after.status, after.body.error.code]).toEqual([401, 'api_key_revoked']);
  });

  it('a revoked key is refused on its very next request', async () => {
    const key = await createKey(['read']);
    expect((await ctx.app.api('GET', '/api/me', { token: key.key })).status).toBe(200);
    expect((await ctx.app.api('DELETE', `/api/api-keys/${key.id}`, { token: ctx.owner.token })).status).toBe(204);
    const after = await ctx.app.api('GET', '/api/me', { token: key.key });
    expect([after.status, after.body.error.code]).toEqual([401, 'api_key_revoked']);
    expect((await ctx.app.api('DELETE', `/api/api-keys/${key.id}`, { token: ctx.owner.token })).status).toBe(404);
    const forged = await ctx.app.api('GET', '/api/me', { token: `itk_${'A'.repeat(43)}` });
    expect([forged.status, forged.body.error.code]).toEqual([401, 'invalid_token']);
  });

  it('records when a key was last used, at most once a minute', async () => {
    const key = await createKey(['read']);
    const lastUsed = async () => (await ctx.app.database.db.select().from(apiKeys).where(eq(apiKeys.id, key.id)))[0]!.lastUsedAt;
    expect(await lastUsed()).toBeNull();
    await ctx.app.api('GET', '/api/me', { token: key.key });
    const first = await lastUsed();
    expect(first).toBeInstanceOf(Date);
    await ctx.app.api('GET', '/api/me', { token: key.key });
    expect((await lastUsed())!.getTime()).toBe(first!.getTime());
  });

  it("every action by a key is audited as that key: consent records and suppression removals name key:<id>", async () => {
    const contact = await ctx.app.api('POST', '/api/contacts', { token: keys.send.key, json: { email: 'keyed@example.com' } });
    expect(contact.status).toBe(201);
    expect((await ctx.app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: keys.send.key, json: { status: 'opted_in', source: 'crm form' } })).status).toBe(201);
    const [consent] = await ctx.app.database.db.select().from(consents).where(eq(consents.contactId, contact.body.id));
    expect(consent!.actor).toBe(`key:${keys.send.id}`);

    const entry = await ctx.app.api('POST', '/api/suppressions', { token: keys.send.key, json: { email: 'gone@example.com' } });
    const removed = await ctx.app.api('DELETE', `/api/suppressions/${entry.body.id}`, { token: keys.admin.key, json: { note: 'asked by phone' } });
    expect(removed.status).toBe(204);
    const audit = await ctx.app.database.db.select().from(auditLog).where(eq(auditLog.subjectId, entry.body.id));
    expect(audit.map((a) => a.actor)).toContain(`key:${keys.admin.id}`);
    const created = await ctx.app.database.db.select().from(auditLog).where(eq(auditLog.subjectId, keys.admin.id));
    expect(created).toMatchObject([{ action: 'api_key.created', actor: `user:${ctx.owner.userId}` }]);
  });

  it("P-03 a key sees that its member's mail happened, never its subject (content is read by a person); it may still reply in the thread", async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'keyed-sender@acme.test');
    ctx.app.sandbox.control.createMailbox({ email: 'keyed-reader@contoso.test' });
    const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'keyed-reader@contoso.test' } });
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: 'keyed-reader@contoso.test', subject: 'KEYED-SUBJECT', text: 'hello' } });
    expect(sent.status, sent.text).toBe(201);

    expect((await ctx.app.api('GET', `/api/messages/${sent.body.id}`, { token: ctx.owner.token })).body.subject).toBe('KEYED-SUBJECT');
    const byKey = await ctx.app.api('GET', `/api/messages/${sent.body.id}`, { token: keys.read.key });
    expect(byKey.status).toBe(200);
    expect(byKey.body).toMatchObject({ id: sent.body.id, status: 'sent', subject: null });
    const timeline = await ctx.app.api('GET', `/api/contacts/${contact.body.id}`, { token: keys.read.key });
    expect(timeline.body.timeline.some((item: { kind?: string; type?: string }) => JSON.stringify(item).includes(sent.body.id))).toBe(true);
    expect(JSON.stringify(timeline.body)).not.toContain('KEYED-SUBJECT');
    expect(JSON.stringify((await ctx.app.api('GET', `/api/contacts/${contact.body.id}`, { token: ctx.owner.token })).body)).toContain('KEYED-SUBJECT');
    const exportedTo = async (token: string) => (await fetch(`${ctx.app.baseUrl}/api/privacy/recipients/export?email=keyed-reader%40contoso.test`, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(await exportedTo(ctx.owner.token)).toContain('KEYED-SUBJECT');
    const byAdminKey = await exportedTo(keys.admin.key);
    expect(byAdminKey).toContain(sent.body.id);
    expect(byAdminKey).not.toContain('KEYED-SUBJECT');

    const reply = await ctx.app.api('POST', '/api/messages', { token: keys.send.key, json: { mailboxId: mailbox.id, to: 'keyed-reader@contoso.test', subject: 'Re: follow-up', text: 'again', inReplyTo: sent.body.id } });
    expect(reply.status, reply.text).toBe(201);
    expect(reply.body.threadId).toBe(sent.body.threadId);
  });
});

