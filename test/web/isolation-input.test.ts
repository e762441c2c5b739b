import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser, WebClient } from '../helpers/web-client.js';

let app: TestApp;
let a: Awaited<ReturnType<typeof signUpInBrowser>>;
let b: Awaited<ReturnType<typeof signUp>>;
const ids: Record<string, string> = {};

beforeAll(async () => {
  app = await startTestApp();
  a = await signUpInBrowser(app);
  b = await signUp(app);
  ids.contact = (await app.api('POST', '/api/contacts', { token: b.token, json: { email: 'secret@b.example', firstName: 'BeeSecret' } })).body.id;
  ids.mailbox = (await connectedMailbox(app, b.token, 'sender@b.example', { sync: true })).id;
  ids.message = (await app.api('POST', '/api/messages', { token: b.token, json: { mailboxId: ids.mailbox, to: 'secret@b.example', subject: 'BeeSecret plans', text: 'x' } })).body.id;
  ids.suppression = (await app.api('POST', '/api/suppressions', { token: b.token, json: { email: 'beesecret@b.example' } })).body.id;
  ids.invitation = (await app.api('POST', '/api/invitations', { token: b.token, json: { email: 'invitee@b.example' } })).body.invitation.id;
});
afterAll(async () => {
  await app?.close();
});

describe('invariant 7 through the pages: workspace A never sees or changes B', () => {
  it('B ids in A’s browser are 404 pages, and nothing of B changes', async () => {
    const before = await snapshotCounts(app.database.db);
    for (const path of [`/app/contacts/${ids.contact}`, `/app/contacts/${ids.contact}/compose`, `/app/messages/${ids.message}`, `/app/messages/${ids.message}/body`]) {
      const res = await a.browser.get(path);
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain('BeeSecret');
    }
    await a.browser.get('/app/contacts');
    const csrf = a.browser.csrfToken();
    const posts: [string, Record<string, string>][] = [
      [`/app/contacts/${ids.contact}/consents`, { status: 'opted_in', source: 'a' }],
      [`/app/contacts/${ids.contact}/compose`, { mailboxId: ids.mailbox!, subject: 's', text: 't' }],
      [`/app/mailboxes/${ids.mailbox}/disconnect`, {}],
      [`/app/suppressions/${ids.suppression}/remove`, { note: 'n' }],
      [`/app/settings/invitations/${ids.invitation}/revoke`, {}],
    ];
    for (const [path, fields] of posts) {
      const res = await a.browser.post(path, fields, { csrf });
      expect(res.status, path).toBe(404);
    }
    expect(await snapshotCounts(app.database.db)).toEqual(before);
    expect((await a.browser.get('/app/contacts?q=BeeSecret')).text).toContain('No contact matches that search.');
    expect((await a.browser.get('/app/suppressions?email=beesecret%40b.example')).text).toContain('No entries match.');
    for (const path of ['/app/contacts', '/app/mailboxes', '/app/settings']) {
      expect((await a.browser.get(path)).text, path).not.toMatch(/BeeSecret|b\.example/i);
    }
  });
});

describe('invariant 9 through the pages: anything a browser can send is a 4xx at worst, and a refused post changes nothing', () => {
  it('random form fields on every form', async () => {
    await a.browser.get('/app/contacts');
    const token = a.browser.csrfToken();
    const forms = [
      '/app/contacts',
      `/app/contacts/${ids.contact}/consents`,
      '/app/suppressions',
      '/app/settings/workspace',
      '/app/settings/invitations',
      '/app/contacts/import',
      '/app/contacts/import/preview',
      '/app/mailboxes/not-an-id/disconnect',
    ];
    const field = fc.string({ unit: 'binary', maxLength: 40 });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...forms), fc.dictionary(fc.constantFrom('email', 'firstName', 'status', 'source', 'name', 'postalAddress', 'role', 'note', 'reason', 'csv', 'map0', 'file', 'x'), field), async (path, fields) => {
        const before = await snapshotCounts(app.database.db);
        const form = new URLSearchParams(fields);
        form.set('_csrf', token);
        const res = await a.browser.request('POST', path, form);
        expect(res.status, `${path} ${JSON.stringify(fields)} → ${res.status}`).toBeLessThan(500);
        if (res.status >= 400) expect(await snapshotCounts(app.database.db)).toEqual(before);
      }),
      { numRuns: 30 },
    );
  }, 180_000);

  it('random query strings on every page', async () => {
    const pages = ['/app/contacts', '/app/suppressions', '/app/mailboxes/connect', '/app/mailboxes/connect/continue', '/signin', '/app/settings'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...pages), fc.dictionary(fc.constantFrom('q', 'cursor', 'email', 'reason', 'sync', 'loginHint', 'acknowledge', 'next', 'notice', 'expired'), fc.string({ maxLength: 40 })), async (path, query) => {
        const res = await a.browser.get(`${path}?${new URLSearchParams(query)}`);
        expect(res.status, `${path} ${JSON.stringify(query)}`).toBeLessThan(500);
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it('a visitor with a garbage session cookie is treated as signed out', async () => {
    const visitor = new WebClient(app);
    for (const value of ['x', 'a'.repeat(43), '%00', 'é'.repeat(10)]) {
      visitor.cookies.set('inboxtrail_session', value);
      const res = await visitor.get('/app/contacts');
      expect(res.status).toBe(303);
      expect(res.location).toMatch(/^\/signin/);
    }
  });
});
