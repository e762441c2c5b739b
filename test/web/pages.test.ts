import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser, WebClient } from '../helpers/web-client.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let apiOwner: Awaited<ReturnType<typeof signUp>>;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  // The same owner through the API, for setup the pages are not under test for.
  const login = await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } });
  apiOwner = { token: login.body.token, workspaceId: (await app.api('GET', '/api/me', { token: login.body.token })).body.workspace.id } as typeof apiOwner;
});
afterAll(async () => {
  await app?.close();
});

const APP_PAGES = ['/app/mailboxes', '/app/mailboxes/connect', '/app/contacts', '/app/contacts/new', '/app/contacts/import', '/app/suppressions', '/app/settings'];

describe('every app page', () => {
  it('renders for a signed-in user inside the shared frame (navigation, sign-out form, sandbox banner)', async () => {
    for (const path of APP_PAGES) {
      const res = await owner.browser.get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/html');
      expect(res.text).toContain('<nav aria-label="Main">');
      expect(res.text).toContain('action="/signout"');
      expect(res.text).toContain('Sandbox mode');
      expect(res.text).toContain(app.sandbox.urls.inbox);
      expect(res.text).toContain(owner.email);
    }
  });

  it('redirects a signed-out visitor to sign-in, keeping where they were going', async () => {
    const visitor = new WebClient(app);
    for (const path of APP_PAGES) {
      const res = await visitor.get(path);
      expect(res.status, path).toBe(303);
      expect(res.location).toBe(`/signin?next=${encodeURIComponent(path)}`);
    }
  });

  it('an unknown app page is a 404 page, a bad id a 404 page, never a 5xx', async () => {
    const unknown = await owner.browser.get('/app/nothing-here');
    expect(unknown.status).toBe(404);
    expect(unknown.text).toContain('page_not_found');
    const badId = await owner.browser.get('/app/contacts/not-a-uuid');
    expect(badId.status).toBe(404);
    const missing = await owner.browser.get('/app/contacts/00000000-0000-4000-8000-000000000000');
    expect(missing.status).toBe(404);
  });

  it('a notice is shown only for its own names: ?notice=constructor and the like show none', async () => {
    expect((await owner.browser.get('/app/mailboxes?notice=campaign_launch')).text).toContain('The campaign is launched.');
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const page = await owner.browser.get(`/app/mailboxes?notice=${name}`);
      expect(page.status).toBe(200);
      expect(page.text).not.toMatch(/native code|\[object Object\]/);
    }
  });
});

describe('contacts', () => {
  it('HTML in a contact name is shown as text on the list and the contact page', async () => {
    const evil = '<img src=x onerror=alert(1)><script>alert(2)</script>';
    const created = await app.api('POST', '/api/contacts', { token: apiOwner.token, json: { email: `evil-${Date.now()}@example.com`, firstName: evil, attributes: { note: '"><b>bold</b>' } } });
    expect(created.status).toBe(201);
    for (const path of [`/app/contacts?q=${encodeURIComponent('evil-')}`, `/app/contacts/${created.body.id}`]) {
      const res = await owner.browser.get(path);
      expect(res.status).toBe(200);
      expect(res.text).not.toContain('<img src=x');
      expect(res.text).not.toContain('<script>alert');
      expect(res.text).toContain('&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;');
    }
    expect((await owner.browser.get(`/app/contacts/${created.body.id}`)).text).toContain('&quot;&gt;&lt;b&gt;bold&lt;/b&gt;');
  });

  it('the list searches and pages (50 a page, a next link that carries the search)', async () => {
    const tag = `pg${Date.now()}`;
    for (let i = 0; i < 53; i += 1) {
      const res = await app.api('POST', '/api/contacts', { token: apiOwner.token, json: { email: `${tag}-${i}@example.com`, lastName: tag } });
      expect(res.status).toBe(201);
    }
    const first = await owner.browser.get(`/app/contacts?q=${tag}`);
    expect(first.text.match(new RegExp(`${tag}-\\d+@example.com</td>`, 'g'))).toHaveLength(50);
    const next = /href="(\/app\/contacts\?q=[^"]+&amp;cursor=[^"]+)" rel="next"/.exec(first.text)![1]!.replace(/&amp;/g, '&');
    const second = await owner.browser.get(next);
    expect(second.text.match(new RegExp(`${tag}-\\d+@example.com</td>`, 'g'))).toHaveLength(3);
    expect(second.text).not.toContain('rel="next"');
    const none = await owner.browser.get('/app/contacts?q=nobody-has-this-name');
    expect(none.text).toContain('No contact matches that search.');
  });

  it('the campaign list pages too (50 a page): every campaign can be reached, not only the newest 200', async () => {
    await app.database.db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience)
      select ${apiOwner.workspaceId}::uuid, 'paged-' || g, 'transactional', 'Hi', 'x', 'draft', '{"contactIds":[]}' from generate_series(1, 52) g`);
    const first = await owner.browser.get('/app/campaigns');
    expect(first.text.match(/>paged-\d+<\/a>/g)).toHaveLength(50);
    const next = /href="(\/app\/campaigns\?cursor=[^"]+)" rel="next"/.exec(first.text)![1]!;
    const second = await owner.browser.get(next);
    expect(second.text.match(/>paged-\d+<\/a>/g)).toHaveLength(2);
    expect(second.text).toContain('First page');
  });

  it('adds a contact from the form; a bad address is shown on the form and stores nothing', async () => {
    await owner.browser.get('/app/contacts/new');
    const bad = await owner.browser.post('/app/contacts', { email: 'not an address', firstName: 'Bad' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('role="alert"');
    expect(bad.text).toContain('email:');
    expect((await owner.browser.get('/app/contacts?q=Bad')).text).toContain('No contact matches that search.');
    const good = await owner.browser.post('/app/contacts', { email: `form-${Date.now()}@example.com`, firstName: 'Ada' });
    expect(good.status).toBe(303);
    const page = await owner.browser.get(good.location!);
    expect(page.text).toContain('<h1>Ada</h1>');
    expect(page.text).toContain('Saved.');
  });

  it('P-11 records consent from the contact page, newest first in the timeline', async () => {
    const created = await app.api('POST', '/api/contacts', { token: apiOwner.token, json: { email: `consent-${Date.now()}@example.com` } });
    await owner.browser.get(`/app/contacts/${created.body.id}`);
    expect((await owner.browser.post(`/app/contacts/${created.body.id}/consents`, { status: 'opted_in', source: 'phone call' })).status).toBe(303);
    await owner.browser.get(`/app/contacts/${created.body.id}`);
    expect((await owner.browser.post(`/app/contacts/${created.body.id}/consents`, { status: 'opted_out', source: 'asked by mail' })).status).toBe(303);
    const page = await owner.browser.get(`/app/contacts/${created.body.id}`);
    expect(page.text).toMatch(/Latest: <span class="status bad">opted_out<\/span>/);
    expect(page.text.indexOf('asked by mail')).toBeLessThan(page.text.indexOf('phone call'));
    const history = await app.api('GET', `/api/contacts/${created.body.id}/consents`, { token: apiOwner.token });
    expect(history.body.consents.map((c: { status: string }) => c.status)).toEqual(['opted_out', 'opted_in']);
  });
});
