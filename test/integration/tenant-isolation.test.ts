import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { campaigns, webhookEvents } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { authenticatedApiRoutes, expectEveryRouteCovered } from '../helpers/routes.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Invariant 7: a user of workspace A can never read or change workspace B. This walks every
 * authenticated /api route of the registry (src/http/api-routes.ts; openapi.test.ts proves the
 * app registers no route outside it); a new route fails the completeness check below, named,
 * until it is added to one of the tables. Public routes (registry access `public`) need no table.
 */

/**
 * Routes that act only on the caller's own account or membership: account-closure.test.ts proves
 * closing A leaves B untouched; leave-workspace.test.ts that leaving touches only the leaver's own.
 */
const SELF_ROUTES = ['POST /api/privacy/delete-account', 'DELETE /api/members/me'];

let app: TestApp;
let a: Awaited<ReturnType<typeof signUp>>;
let b: Awaited<ReturnType<typeof signUp>>;
const ids: Record<string, string> = {};

beforeAll(async () => {
  app = await startTestApp();
  a = await signUp(app);
  b = await signUp(app);
  const contact = await app.api('POST', '/api/contacts', { token: b.token, json: { email: 'secret-contact@b.example', firstName: 'BeeSecret' } });
  ids.contact = contact.body.id;
  await app.api('POST', `/api/contacts/${ids.contact}/consents`, { token: b.token, json: { status: 'opted_in', source: 'b-form' } });
  const invitation = await app.api('POST', '/api/invitations', { token: b.token, json: { email: 'invitee@b.example' } });
  ids.invitation = invitation.body.invitation.id;
  ids.mailbox = (await connectedMailbox(app, b.token, 'sender@b.example')).id;
  app.sandbox.control.createMailbox({ email: 'friend@b.example' });
  const sent = await app.api('POST', '/api/messages', {
    token: b.token,
    json: { mailboxId: ids.mailbox, to: 'secret-contact@b.example', subject: 'BeeSecret plans', text: 'x' },
  });
  ids.message = sent.body.id;
  ids.webhook = (await app.api('POST', '/api/webhooks', { token: b.token, json: { url: 'https://93.184.215.14/b-hook', eventTypes: ['suppression.added'] } })).body.id;
  const suppression = await app.api('POST', '/api/suppressions', { token: b.token, json: { email: 'BeeSecret.optout@b.example', note: 'BeeSecret note' } });
  ids.suppression = suppression.body.id;
  ids.apiKey = (await app.api('POST', '/api/api-keys', { token: b.token, json: { name: 'BeeSecret key', scopes: ['admin'] } })).body.id;
  // A grant of B's: B's owner lets a member of B read B's message.
  const bInvite = await app.api('POST', '/api/invitations', { token: b.token, json: { email: 'colleague@b.example' } });
  const colleague = await acceptInvitation(app, { token: bInvite.body.token, password: 'a long enough password' });
  const grant = await app.api('POST', '/api/grants', {
    token: b.token,
    json: { messageId: ids.message, granteeUserId: colleague.body.user.id, expiresAt: new Date(Date.now() + 86_400_000).toISOString() },
  });
  ids.grant = grant.body.id;
  ids.bOwner = b.userId;
  const legal = await app.api('POST', '/api/privacy/legal-requests', {
    token: b.token,
    json: { authority: 'Court', legalBasis: 'Order', reference: 'BeeSecret-1', scope: { contactIds: [ids.contact], from: '2020-01-01T00:00:00Z', to: '2030-01-01T00:00:00Z', kinds: ['contacts'] } },
  });
  ids.legalRequest = legal.body.id;
  // B asks to move their login address: the code mailed for it must be useless to A.
  await app.api('PATCH', '/api/me', { token: b.token, json: { email: 'moved@b.example', currentPassword: b.password } });
  const codeMail = app.services.accountMailer.outbox!.find((m) => m.to === 'moved@b.example');
  ids.emailCode = /code is:\n\n(\S+)/.exec(codeMail!.text)![1]!;
  ids.webhookEvent = (await app.database.db.select().from(webhookEvents).where(eq(webhookEvents.workspaceId, b.workspaceId)))[0]!.id;
  // A campaign of B's, inserted directly: only its id matters to the routes below.
  ids.campaign ??= (
    await app.database.db
      .insert(campaigns)
      .values({ workspaceId: b.workspaceId, name: 'BeeSecret launch', kind: 'marketing', subject: 'BeeSecret', audience: { contactIds: [] } })
      .returning({ id: campaigns.id })
  )[0]!.id;
});
afterAll(async () => {
  await app.close();
});

const VALID_CAMPAIGN = {
  name: 'A campaign',
  kind: 'transactional',
  mailboxId: '00000000-0000-4000-8000-000000000000',
  subject: 'Hello',
  text: 'x',
  segment: { all: [{ field: 'email', op: 'exists' }] },
};

/** Routes that name a resource by id: A asks for B's resource and must get 404. */
const ID_ROUTES: Record<string, { id: () => string; json?: unknown; csv?: string }> = {
  'GET /api/contacts/:id': { id: () => ids.contact! },
  'PATCH /api/contacts/:id': { id: () => ids.contact!, json: { firstName: 'Hijacked' } },
  'DELETE /api/contacts/:id': { id: () => ids.contact! },
  'GET /api/contacts/:id/consents': { id: () => ids.contact! },
  'POST /api/contacts/:id/consents': { id: () => ids.contact!, json: { status: 'opted_out', source: 'attacker' } },
  'DELETE /api/invitations/:id': { id: () => ids.invitation! },
  'DELETE /api/grants/:id': { id: () => ids.grant! },
  'PATCH /api/members/:id': { id: () => ids.bOwner!, json: { role: 'member' } },
  'DELETE /api/members/:id': { id: () => ids.bOwner! },
  'PATCH /api/mailboxes/:id': { id: () => ids.mailbox!, json: { dailyBudget: 1 } },
  'DELETE /api/mailboxes/:id': { id: () => ids.mailbox! },
  'DELETE /api/suppressions/:id': { id: () => ids.suppression!, json: { note: 'attacker' } },
  'DELETE /api/api-keys/:id': { id: () => ids.apiKey! },
  'GET /api/messages/:id': { id: () => ids.message! },
  'GET /api/messages/:id/content': { id: () => ids.message! },
  'GET /api/campaigns/:id/stats': { id: () => ids.campaign! },
  'GET /api/campaigns/:id/results.csv': { id: () => ids.campaign! },
  'GET /api/campaigns/:id': { id: () => ids.campaign! },
  'PATCH /api/campaigns/:id': { id: () => ids.campaign!, json: VALID_CAMPAIGN },
  'POST /api/campaigns/:id/preflight': { id: () => ids.campaign! },
  'POST /api/campaigns/:id/launch': { id: () => ids.campaign!, json: {} },
  'POST /api/campaigns/:id/pause': { id: () => ids.campaign! },
  'POST /api/campaigns/:id/resume': { id: () => ids.campaign! },
  'POST /api/campaigns/:id/cancel': { id: () => ids.campaign! },
  'POST /api/campaigns/:id/recipients': { id: () => ids.campaign!, csv: 'email\nintruder@a.example\n' },
  'GET /api/privacy/legal-requests/:id': { id: () => ids.legalRequest! },
  'GET /api/privacy/legal-requests/:id/disclosure': { id: () => ids.legalRequest! },
  'DELETE /api/campaigns/:id': { id: () => ids.campaign! },
  'GET /api/webhooks/:id': { id: () => ids.webhook! },
  'PATCH /api/webhooks/:id': { id: () => ids.webhook!, json: { enabled: false } },
  'DELETE /api/webhooks/:id': { id: () => ids.webhook! },
  'POST /api/webhooks/:id/rotate-secret': { id: () => ids.webhook! },
  'GET /api/webhooks/:id/deliveries': { id: () => ids.webhook! },
  'POST /api/webhooks/:id/events/:eventId/redeliver': { id: () => ids.webhook! },
};

/** Routes without an id: what A sees must not mention anything of B's. */
const COLLECTION_ROUTES: Record<string, { json?: unknown; body?: string; contentType?: string; query?: string }> = {
  'GET /api/me': {},
  'GET /api/members': {},
  'GET /api/invitations': {},
  'GET /api/contacts': {},
  'POST /api/contacts': { json: { email: 'own-contact@a.example' } },
  'POST /api/invitations': { json: { email: 'someone@a.example' } },
  'POST /api/contacts/import': { body: 'email\nsecret-contact@b.example\n', contentType: 'text/csv' },
  'GET /api/mailboxes': {},
  'GET /api/gmail/connect': { contentType: 'application/json' },
  'GET /api/suppressions': {},
  'POST /api/suppressions': { json: { email: 'own-optout@a.example' } },
  'GET /api/campaigns': {},
  'GET /api/grants': {},
  'GET /api/compliance/report': {},
  'PATCH /api/workspace': { json: { name: 'A renamed' } },
  'GET /api/api-keys': {},
  'POST /api/api-keys': { json: { name: 'A key', scopes: ['read'] } },
  'PATCH /api/me': { json: { name: 'A person' } },
  'GET /api/privacy/export': {},
  'GET /api/privacy/recipients/export': { query: '?email=secret-contact%40b.example' },
  'GET /api/privacy/legal-requests': {},
  'POST /api/privacy/legal-requests': {
    json: { authority: 'Court', legalBasis: 'Order', reference: 'A-1', scope: { addresses: ['secret-contact@b.example'], from: '2020-01-01T00:00:00Z', to: '2030-01-01T00:00:00Z', kinds: ['contacts', 'consents', 'messages'] } },
  },
  'GET /api/webhooks': {},
  'POST /api/webhooks': { json: { url: 'https://93.184.215.14/a-hook', eventTypes: ['open'] } },
};

/** Routes that take another workspace's id inside the body: they must answer 404 and change nothing. */
const BODY_ID_ROUTES: Record<string, () => unknown> = {
  'POST /api/messages': () => ({ mailboxId: ids.mailbox, to: 'victim@a.example', subject: 'from B', text: 'x' }),
  'POST /api/messages (reply)': () => ({ mailboxId: ids.ownMailbox, to: 'x@a.example', subject: 'Re', text: 'x', inReplyTo: ids.message }),
  'POST /api/campaigns': () => ({ ...VALID_CAMPAIGN, mailboxId: ids.mailbox }),
  'POST /api/grants': () => ({ messageId: ids.message, granteeUserId: b.userId, expiresAt: new Date(Date.now() + 86_400_000).toISOString() }),
  'POST /api/me/email/verify': () => ({ code: ids.emailCode }),
};

describe('tenant isolation (invariant 7)', () => {
  it('every authenticated /api route of the registry is in one of the tables', () => {
    const covered = [...SELF_ROUTES, ...Object.keys(ID_ROUTES), ...Object.keys(COLLECTION_ROUTES), ...Object.keys(BODY_ID_ROUTES).map((k) => k.replace(/ \(.*\)$/, ''))];
    expectEveryRouteCovered('ID_ROUTES, COLLECTION_ROUTES, BODY_ID_ROUTES or SELF_ROUTES', authenticatedApiRoutes(), covered);
  });

  it('every non-public route refuses a caller without a token', async () => {
    for (const route of authenticatedApiRoutes()) {
      const [method, path] = route.split(' ') as [string, string];
      const res = await app.api(method, path.replace(':id', ids.contact!), method === 'GET' ? {} : { json: {} });
      expect(res.status, route).toBe(401);
    }
  });

  it.each(Object.entries(ID_ROUTES))('%s with the other workspace\'s id → 404, nothing leaked or changed', async (key, spec) => {
    const [method, path] = key.split(' ') as [string, string];
    const before = await snapshotCounts(app.database.db);
    const res = await app.api(
      method,
      path.replace(':id', spec.id()).replace(':eventId', ids.webhookEvent!),
      spec.csv === undefined ? { token: a.token, json: spec.json } : { token: a.token, body: spec.csv, headers: { 'content-type': 'text/csv' } },
    );
    expect(res.status).toBe(404);
    expect(res.text).not.toContain('b.example');
    expect(res.text).not.toContain('BeeSecret');
    expect(await snapshotCounts(app.database.db)).toEqual(before);
  });

  it.each(Object.entries(BODY_ID_ROUTES))('%s naming the other workspace\'s ids → 404, nothing sent or changed', async (key, body) => {
    ids.ownMailbox ??= (await connectedMailbox(app, a.token, 'sender@a.example')).id;
    const before = await snapshotCounts(app.database.db);
    const sends = app.sandbox.control.callCounts({ successfulOnly: true }).send;
    const res = await app.api('POST', key.split(' ')[1]!, { token: a.token, json: body() });
    expect(res.status, key).toBe(404);
    expect(res.text).not.toContain('b.example');
    expect(await snapshotCounts(app.database.db)).toEqual(before);
    expect(app.sandbox.control.callCounts({ successfulOnly: true }).send).toBe(sends);
  });

  it.each(Object.entries(COLLECTION_ROUTES))('%s shows none of the other workspace\'s data', async (key, spec) => {
    const [method, path] = key.split(' ') as [string, string];
    const res = await app.api(method, `${path}${spec.query ?? ''}`, {
      token: a.token,
      json: spec.json,
      body: spec.body,
      headers: spec.contentType ? { 'content-type': spec.contentType, accept: spec.contentType } : {},
    });
    expect(res.status).toBeLessThan(300);
    expect(res.text).not.toContain(ids.contact);
    expect(res.text).not.toContain(ids.invitation);
    expect(res.text).not.toContain(ids.mailbox);
    expect(res.text).not.toContain('sender@b.example');
    expect(res.text).not.toContain('BeeSecret');
    expect(res.text).not.toContain(b.workspaceId);
  });

  it('B\'s data is intact after all of that', async () => {
    const contact = await app.api('GET', `/api/contacts/${ids.contact}`, { token: b.token });
    expect(contact.body).toMatchObject({ firstName: 'BeeSecret', consent: { status: 'opted_in', source: 'b-form' } });
    const mailboxes = await app.api('GET', '/api/mailboxes', { token: b.token });
    expect(mailboxes.body.mailboxes).toMatchObject([{ id: ids.mailbox, dailyBudget: 2000, status: 'active' }]);
    const invitations = await app.api('GET', '/api/invitations', { token: b.token });
    expect(invitations.body.invitations.map((i: { id: string }) => i.id)).toEqual([ids.invitation]);
    const suppressionList = await app.api('GET', '/api/suppressions', { token: b.token });
    expect(suppressionList.body.suppressions.map((s: { id: string }) => s.id)).toEqual([ids.suppression]);
    // A's import of the same address made A's own contact, not a link to B's.
    const aContacts = await app.api('GET', '/api/contacts?q=secret-contact', { token: a.token });
    expect(aContacts.body.contacts).toHaveLength(1);
    expect(aContacts.body.contacts[0].id).not.toBe(ids.contact);
  });
});
