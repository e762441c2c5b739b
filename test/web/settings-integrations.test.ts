import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_EVENT_TYPES } from '../../src/webhooks/events.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { memberInBrowser, signUpInBrowser, type WebClient } from '../helpers/web-client.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
beforeAll(async () => {
  // Private webhook targets stay refused (the default), so the form's 422 can be seen; endpoints use a public-looking IP.
  app = await startTestApp();
  owner = await signUpInBrowser(app);
});
afterAll(async () => {
  await app?.close();
});

/** Posts a form whose fields may repeat (checkbox groups), with the CSRF token of the last page. */
function postForm(browser: WebClient, path: string, fields: [string, string][]) {
  const form = new URLSearchParams(fields);
  form.set('_csrf', browser.csrfToken());
  return browser.request('POST', path, form);
}

const INTEGRATIONS = '/app/settings/integrations';

/** Which boxes of a checkbox group a page shows ticked, by value. */
function boxes(page: string, name: string): Record<string, boolean> {
  const found = [...page.matchAll(new RegExp(`<input type="checkbox" name="${name}" value="([^"]+)"( checked)?>`, 'g'))];
  return Object.fromEntries(found.map((m) => [m[1]!, m[2] === ' checked']));
}
/** The value an input of the page shows (escaped as in the HTML); '' when it has none. */
const fieldValue = (page: string, name: string) => new RegExp(`<input (?:type="[a-z]+" )?name="${name}"(?: value="([^"]*)")?`).exec(page)?.[1] ?? '';
/**
 * The alerts of a page by the part they are in: the text before the first <h2 id> is "top",
 * then each part is named by its heading's id.
 */
function alertsIn(page: string): Record<string, string[]> {
  const found: Record<string, string[]> = {};
  const main = page.slice(page.indexOf('<main'));
  for (const part of main.split(/(?=<h2 id=")/)) {
    const name = /^<h2 id="([^"]+)"/.exec(part)?.[1] ?? 'top';
    const alerts = [...part.matchAll(/<p (?:id="[^"]+" )?class="notice error" role="alert">([^<]*)<\/p>/g)].map((m) => m[1]!);
    if (alerts.length) found[name] = alerts;
  }
  return found;
}
/**
 * Where a browser opens the page answering a form: the element the action's fragment names. A
 * refused form's page opens at its message (the only alert), a success at the top (no such id).
 */
function landsOn(page: string, action: string): string | undefined {
  const id = /#([^"]+)$/.exec(action)?.[1];
  const at = id ? page.indexOf(` id="${id}"`) : -1;
  if (at < 0 || page.indexOf(` id="${id}"`, at + 1) >= 0) return undefined;
  return page.slice(page.lastIndexOf('<', at), page.indexOf('>', at) + 1);
}
/** The action of the page's form that posts to `path` (a row's buttons: the first of them). */
const actionOf = (page: string, path: string) => new RegExp(`action="(${path.replace(/[.?]/g, '\\$&')}(?:#[^"]*)?)"`).exec(page)?.[1];
const ALERT_AT = (id: string) => `<p id="${id}" class="notice error" role="alert">`;
const NO_EVENT_TICKED = Object.fromEntries(WEBHOOK_EVENT_TYPES.map((t) => [t, false]));

describe('Settings → integrations and privacy', () => {
  it('an API key created on the page works as a Bearer on /api/me, is shown once, and is revoked from the page', async () => {
    const settings = await owner.browser.get('/app/settings');
    expect(settings.text).toContain(`href="${INTEGRATIONS}"`);
    await owner.browser.get(INTEGRATIONS);
    const created = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'CRM sync <b>'], ['scopes', 'read'], ['scopes', 'send']]);
    expect(created.status).toBe(201);
    expect(created.text).toContain('CRM sync &lt;b&gt;');
    const key = /<code>([^<]+)<\/code>/.exec(created.text)![1]!;
    expect((await app.api('GET', '/api/me', { token: key })).status).toBe(200);

    const list = await owner.browser.get(INTEGRATIONS);
    expect(list.text).not.toContain(key);
    expect(list.text).toContain('read, send');
    const id = /action="\/app\/settings\/api-keys\/([0-9a-f-]{36})\/revoke#/.exec(list.text)![1]!;
    const revoked = await owner.browser.post(`/app/settings/api-keys/${id}/revoke`, {});
    expect(revoked.status).toBe(303);
    expect((await app.api('GET', '/api/me', { token: key })).status).toBe(401);
    expect((await owner.browser.get(INTEGRATIONS)).text).toMatch(/revoked \d{4}-/);
  });

  it('a key without a scope is a 400 on the form (its name kept, no box ticked, as sent) and creates nothing', async () => {
    await owner.browser.get(INTEGRATIONS);
    const refused = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'no scopes']]);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('role="alert"');
    expect(fieldValue(refused.text, 'name')).toBe('no scopes');
    expect(boxes(refused.text, 'scopes')).toEqual({ read: false, send: false, admin: false });
    expect(refused.text).not.toContain('<td>no scopes');
  });

  it('a refused key form comes back as sent (name escaped, ticked scopes), the webhook form fresh; a fresh page ticks only `read`', async () => {
    const fresh = await owner.browser.get(INTEGRATIONS);
    expect(boxes(fresh.text, 'scopes')).toEqual({ read: true, send: false, admin: false });
    expect(fieldValue(fresh.text, 'name')).toBe('');
    const name = `Key "<b>" ${'x'.repeat(200)}`;
    const refused = await postForm(owner.browser, '/app/settings/api-keys', [['name', name], ['scopes', 'send'], ['scopes', 'admin']]);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('role="alert"');
    expect(fieldValue(refused.text, 'name')).toBe(`Key &quot;&lt;b&gt;&quot; ${'x'.repeat(200)}`);
    expect(boxes(refused.text, 'scopes')).toEqual({ read: false, send: true, admin: true });
    expect(boxes(refused.text, 'eventTypes')).toEqual(NO_EVENT_TICKED);
    expect(fieldValue(refused.text, 'url')).toBe('');
    // One box ticked arrives as a single value, not a list: it is kept too.
    const one = await postForm(owner.browser, '/app/settings/api-keys', [['name', name], ['scopes', 'admin']]);
    expect(one.status).toBe(400);
    expect(boxes(one.text, 'scopes')).toEqual({ read: false, send: false, admin: true });
    expect((await owner.browser.get(INTEGRATIONS)).text).not.toContain('<td>Key &quot;');
  });

  it('a refused webhook form comes back with its URL (escaped, never its user name or password) and ticked event types, the key form fresh', async () => {
    const fresh = await owner.browser.get(INTEGRATIONS);
    expect(boxes(fresh.text, 'eventTypes')).toEqual(NO_EVENT_TICKED);
    const privateTarget = await postForm(owner.browser, '/app/settings/webhooks', [
      ['url', 'http://127.0.0.1:9/hook?tag="<x>"'],
      ['eventTypes', 'open'],
      ['eventTypes', 'click'],
      ['eventTypes', 'reply'],
    ]);
    expect(privateTarget.status).toBe(422);
    expect(fieldValue(privateTarget.text, 'url')).toBe('http://127.0.0.1:9/hook?tag=&quot;&lt;x&gt;&quot;');
    expect(boxes(privateTarget.text, 'eventTypes')).toEqual({ ...NO_EVENT_TICKED, open: true, click: true, reply: true });
    expect(boxes(privateTarget.text, 'scopes')).toEqual({ read: true, send: false, admin: false });
    expect(fieldValue(privateTarget.text, 'name')).toBe('');

    const withPassword = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'https://alice:s3cret-pass@93.184.215.14/hook'], ['eventTypes', 'click']]);
    expect(withPassword.status).toBe(400);
    expect(withPassword.text).toMatch(/role="alert">[^<]*user name or password/);
    expect(fieldValue(withPassword.text, 'url')).toBe('https://93.184.215.14/hook');
    expect(withPassword.text).not.toContain('s3cret-pass');
    expect(withPassword.text).not.toContain('alice');
    expect(boxes(withPassword.text, 'eventTypes')).toEqual({ ...NO_EVENT_TICKED, click: true });
    const unreadable = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'https://bob:hunter2@'], ['eventTypes', 'click']]);
    expect(unreadable.status).toBe(400);
    expect(unreadable.text).not.toContain('hunter2');
    expect(fieldValue(unreadable.text, 'url')).toBe('');
  });

  it('a webhook endpoint is added (secret shown once), disabled, enabled and deleted from the page; a bad URL and a private target show on the form', async () => {
    await owner.browser.get(INTEGRATIONS);
    const url = 'https://93.184.215.14/inboxtrail-hook';
    const added = await postForm(owner.browser, '/app/settings/webhooks', [['url', url], ['eventTypes', 'message.sent'], ['eventTypes', 'reply']]);
    expect(added.status, added.text).toBe(201);
    const secret = /<code>([^<]+)<\/code>/.exec(added.text)![1]!;
    expect(secret.length).toBeGreaterThan(20);
    const list = await owner.browser.get(INTEGRATIONS);
    expect(list.text).toContain(url);
    expect(list.text).not.toContain(secret);
    const id = /action="\/app\/settings\/webhooks\/([0-9a-f-]{36})\/disable#/.exec(list.text)![1]!;
    expect((await owner.browser.post(`/app/settings/webhooks/${id}/disable`, {})).status).toBe(303);
    expect((await owner.browser.get(INTEGRATIONS)).text).toContain(`/app/settings/webhooks/${id}/enable`);
    expect((await owner.browser.post(`/app/settings/webhooks/${id}/enable`, {})).status).toBe(303);
    await owner.browser.get(INTEGRATIONS);
    expect((await owner.browser.post(`/app/settings/webhooks/${id}/delete`, {})).status).toBe(303);
    expect((await owner.browser.get(INTEGRATIONS)).text).not.toContain(url);

    const bad = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'ftp://example.com/x'], ['eventTypes', 'message.sent']]);
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('role="alert"');
    const privateTarget = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'http://127.0.0.1:9/hook'], ['eventTypes', 'message.sent']]);
    expect(privateTarget.status).toBe(422);
    expect(privateTarget.text).toMatch(/role="alert">[^<]*private networks/);
    expect(privateTarget.text).not.toContain('127.0.0.1:9/hook</td>');
  });

  it('each refused form shows its message above that form, in its own part of the page, never at the top, with the API\'s status', async () => {
    await owner.browser.get(INTEGRATIONS);
    const keyForm = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'no scopes']]);
    expect(keyForm.status).toBe(400);
    expect(alertsIn(keyForm.text)).toEqual({ 'api-keys': [expect.stringContaining('scopes')] });
    expect(keyForm.text).toMatch(/role="alert">[^<]*scopes[^<]*<\/p>\s*<form id="new-api-key"/);

    const hookForm = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'http://127.0.0.1:9/hook'], ['eventTypes', 'open']]);
    expect(hookForm.status).toBe(422);
    expect(alertsIn(hookForm.text)).toEqual({ webhooks: [expect.stringContaining('private networks')] });
    expect(hookForm.text).toMatch(/role="alert">[^<]*private networks[^<]*<\/p>\s*<form id="new-webhook"/);
    expect(fieldValue(hookForm.text, 'url')).toBe('http://127.0.0.1:9/hook');

    // A row's button for something gone (another admin's tab): the message heads that list.
    const gone = '00000000-0000-4000-8000-000000000000';
    const revoke = await postForm(owner.browser, `/app/settings/api-keys/${gone}/revoke`, []);
    expect(revoke.status).toBe(404);
    expect(alertsIn(revoke.text)).toEqual({ 'api-keys': [expect.stringContaining('API key')] });
    const remove = await postForm(owner.browser, `/app/settings/webhooks/${gone}/delete`, []);
    expect(remove.status).toBe(404);
    expect(alertsIn(remove.text)).toEqual({ webhooks: [expect.stringContaining('ebhook')] });

    // The report's range is refused on the report's form, with the days as typed.
    const range = await owner.browser.get('/app/settings/compliance-report.csv?from=2026-03-01&to=2026-02-01');
    expect(range.status).toBe(400);
    expect(range.headers.get('content-type')).toContain('text/html');
    expect(alertsIn(range.text)).toEqual({ 'compliance-report': [expect.stringContaining('must be before to')] });
    expect(range.text).toMatch(/role="alert">[^<]*<\/p>\s*<form id="compliance-report-range"/);
    expect(fieldValue(range.text, 'from')).toBe('2026-03-01');
    expect(fieldValue(range.text, 'to')).toBe('2026-02-01');
    // Days that do not exist, and text that is no day, with or without the other end: the same form, never a 500.
    for (const query of ['to=abc', 'to=2026-99-99', 'from=2026-02-30', 'from=2026-13-45&to=2026-12-31', 'to=-271821-04-20T00:00:00Z']) {
      const refused = await owner.browser.get(`/app/settings/compliance-report.csv?${query}`);
      expect([query, refused.status]).toEqual([query, 400]);
      expect(refused.headers.get('content-type')).toContain('text/html');
      expect(Object.keys(alertsIn(refused.text))).toEqual(['compliance-report']);
    }
    // An instant is what the API takes: the default range counts back from it.
    const instant = await owner.browser.get('/app/settings/compliance-report.csv?to=2026-01-01T10:00:00Z');
    expect([instant.status, instant.headers.get('content-disposition')]).toEqual([200, 'attachment; filename="compliance-report-2025-10-03-2026-01-01.csv"']);

    // A notice carried over a redirect still shows at the top, and a fresh page has no alert.
    const saved = await owner.browser.get(`${INTEGRATIONS}?notice=saved`);
    expect(saved.text).toMatch(/<main[^>]*><p class="notice" role="status">/);
    expect(saved.text).not.toContain('role="alert"');
  });

  it('each form\'s action names the id of its message: a refused form\'s page opens at the message (without JavaScript), a success\'s at its top', async () => {
    await owner.browser.get(INTEGRATIONS);
    // Successes first (a key and an endpoint, so their rows' buttons are on the page): the
    // fragment names nothing on a 201 page, which opens at the secret on its top.
    const key = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'landing'], ['scopes', 'read']]);
    const hook = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'https://93.184.215.14/landing'], ['eventTypes', 'open']]);
    expect([key.status, hook.status]).toEqual([201, 201]);
    const page = (await owner.browser.get(INTEGRATIONS)).text;
    const keyId = /action="\/app\/settings\/api-keys\/([0-9a-f-]{36})\/revoke/.exec(page)![1]!;
    const hookId = /action="\/app\/settings\/webhooks\/([0-9a-f-]{36})\/disable/.exec(page)![1]!;
    const actions = {
      newKey: actionOf(page, '/app/settings/api-keys')!,
      revoke: actionOf(page, `/app/settings/api-keys/${keyId}/revoke`)!,
      newHook: actionOf(page, '/app/settings/webhooks')!,
      disable: actionOf(page, `/app/settings/webhooks/${hookId}/disable`)!,
      remove: actionOf(page, `/app/settings/webhooks/${hookId}/delete`)!,
      report: actionOf(page, '/app/settings/compliance-report.csv')!,
    };
    expect(actions).toEqual({
      newKey: '/app/settings/api-keys#new-api-key-error',
      revoke: `/app/settings/api-keys/${keyId}/revoke#api-keys-error`,
      newHook: '/app/settings/webhooks#new-webhook-error',
      disable: `/app/settings/webhooks/${hookId}/disable#webhooks-error`,
      remove: `/app/settings/webhooks/${hookId}/delete#webhooks-error`,
      report: '/app/settings/compliance-report.csv#compliance-report-error',
    });
    expect(landsOn(key.text, actions.newKey)).toBeUndefined();
    expect(landsOn(hook.text, actions.newHook)).toBeUndefined();
    expect(page).not.toMatch(/ id="[^"]*-error"/);

    const refusedKey = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'no scopes']]);
    expect(landsOn(refusedKey.text, actions.newKey)).toBe(ALERT_AT('new-api-key-error'));
    const refusedHook = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'http://127.0.0.1:9/hook'], ['eventTypes', 'open']]);
    expect(landsOn(refusedHook.text, actions.newHook)).toBe(ALERT_AT('new-webhook-error'));
    // A row's button for something gone: the same row action's fragment, the list's message.
    const gone = '00000000-0000-4000-8000-000000000000';
    const revoke = await postForm(owner.browser, `/app/settings/api-keys/${gone}/revoke`, []);
    expect(landsOn(revoke.text, actions.revoke)).toBe(ALERT_AT('api-keys-error'));
    const remove = await postForm(owner.browser, `/app/settings/webhooks/${gone}/delete`, []);
    expect(landsOn(remove.text, actions.remove)).toBe(ALERT_AT('webhooks-error'));
    const range = await owner.browser.get('/app/settings/compliance-report.csv?from=2026-03-01&to=2026-02-01');
    expect(landsOn(range.text, actions.report)).toBe(ALERT_AT('compliance-report-error'));
    expect([refusedKey.status, refusedHook.status, revoke.status, remove.status, range.status]).toEqual([400, 422, 404, 404, 400]);

    // A row's success redirects without a fragment of its own, so the browser keeps the action's:
    // the landing page has no such id and opens at its top, on the notice.
    const disabled = await postForm(owner.browser, `/app/settings/webhooks/${hookId}/disable`, []);
    expect(disabled).toMatchObject({ status: 303, location: '/app/settings/integrations?notice=saved' });
    const landed = await owner.browser.get(disabled.location!);
    expect(landsOn(landed.text, actions.disable)).toBeUndefined();
    expect(landed.text).toMatch(/<main[^>]*><p class="notice" role="status">/);
  });

  it('the compliance CSV downloads for an owner and is refused to a member', async () => {
    const report = await owner.browser.get('/app/settings/compliance-report.csv');
    expect(report.status).toBe(200);
    expect(report.headers.get('content-type')).toContain('text/csv');
    expect(report.headers.get('content-disposition')).toMatch(/attachment; filename="compliance-report-/);
    expect(report.text.split('\n')[0]!.length).toBeGreaterThan(0);
    const ranged = await owner.browser.get('/app/settings/compliance-report.csv?from=2026-01-01&to=2026-02-01');
    expect(ranged.headers.get('content-disposition')).toContain('compliance-report-2026-01-01-2026-02-01.csv');
    expect((await owner.browser.get('/app/settings/compliance-report.csv?from=not-a-date')).status).toBe(400);

    const member = await memberInBrowser(app, owner.browser);
    expect((await member.get('/app/settings/compliance-report.csv')).status).toBe(403);
    const memberPage = await member.get(INTEGRATIONS);
    expect(memberPage.status).toBe(200);
    expect(memberPage.text).not.toContain('compliance-report.csv');
    expect(memberPage.text).toContain('href="/app/account"');
    expect((await member.post('/app/settings/api-keys', { name: 'sneaky', scopes: 'admin' })).status).toBe(403);
  });

  it("an endpoint's URL is changed from its page (the API's PATCH rules); a refused URL is the form again with its 4xx, nothing changed", async () => {
    const token = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token as string;
    await owner.browser.get(INTEGRATIONS);
    const added = await postForm(owner.browser, '/app/settings/webhooks', [['url', 'https://93.184.215.14/before'], ['eventTypes', 'open']]);
    expect(added.status).toBe(201);
    const id = new RegExp('href="/app/settings/webhooks/([0-9a-f-]{36})#url">Change URL</a>').exec(added.text)![1]!;
    const urlOf = async () => (await app.api('GET', `/api/webhooks/${id}`, { token })).body.url as string;
    const endpointPage = `/app/settings/webhooks/${id}`;

    const form = await owner.browser.get(endpointPage);
    expect(fieldValue(form.text, 'url')).toBe('https://93.184.215.14/before');
    const action = actionOf(form.text, `${endpointPage}/url`)!;
    expect(action).toBe(`${endpointPage}/url#url-error`);
    const changed = await postForm(owner.browser, action.split('#')[0]!, [['url', 'https://93.184.215.15/after']]);
    expect([changed.status, changed.location]).toEqual([303, `${endpointPage}?notice=saved`]);
    expect(await urlOf()).toBe('https://93.184.215.15/after');

    for (const [typed, status, says, shown] of [
      ['http://127.0.0.1:9/hook', 422, /private networks/, 'http://127.0.0.1:9/hook'],
      ['ftp://example.com/x', 400, /http\(s\) URL/, 'ftp://example.com/x'],
      ['https://someone:hunter2@93.184.215.16/x', 400, /user name or password/, 'https://93.184.215.16/x'],
      ['', 400, /url/, ''],
    ] as const) {
      await owner.browser.get(endpointPage);
      const refused = await postForm(owner.browser, `${endpointPage}/url`, [['url', typed]]);
      expect([typed, refused.status]).toEqual([typed, status]);
      expect(refused.headers.get('content-type')).toContain('text/html');
      expect(refused.text).toMatch(new RegExp(`${ALERT_AT('url-error')}[^<]*`));
      expect(new RegExp(`${ALERT_AT('url-error')}([^<]*)`).exec(refused.text)![1]).toMatch(says);
      expect(refused.text).toMatch(/role="alert">[^<]*<\/p>\s*<form id="url-form"/);
      expect(fieldValue(refused.text, 'url')).toBe(shown);
      expect(refused.text).not.toContain('hunter2');
      expect(await urlOf()).toBe('https://93.184.215.15/after');
    }
    // Someone else's endpoint, or none: the error page's 404, nothing changed.
    const gone = await postForm(owner.browser, '/app/settings/webhooks/00000000-0000-4000-8000-000000000000/url', [['url', 'https://93.184.215.17/x']]);
    expect(gone.status).toBe(404);

    const member = await memberInBrowser(app, owner.browser);
    await member.get(INTEGRATIONS);
    const memberTry = await member.post(`${endpointPage}/url`, { url: 'https://93.184.215.18/member' });
    expect(memberTry.status).toBe(403);
    expect(await urlOf()).toBe('https://93.184.215.15/after');
  });

  it('a form posted without the CSRF token is refused and changes nothing', async () => {
    await owner.browser.get(INTEGRATIONS);
    const refused = await owner.browser.post('/app/settings/api-keys', { name: 'forged', scopes: 'admin' }, { csrf: null });
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('csrf_token_invalid');
    expect((await owner.browser.get(INTEGRATIONS)).text).not.toContain('forged');
  });
});
