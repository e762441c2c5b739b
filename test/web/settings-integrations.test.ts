import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    const id = /action="\/app\/settings\/api-keys\/([0-9a-f-]{36})\/revoke"/.exec(list.text)![1]!;
    const revoked = await owner.browser.post(`/app/settings/api-keys/${id}/revoke`, {});
    expect(revoked.status).toBe(303);
    expect((await app.api('GET', '/api/me', { token: key })).status).toBe(401);
    expect((await owner.browser.get(INTEGRATIONS)).text).toMatch(/revoked \d{4}-/);
  });

  it('a key without a scope is a 422 on the form and creates nothing', async () => {
    await owner.browser.get(INTEGRATIONS);
    const refused = await postForm(owner.browser, '/app/settings/api-keys', [['name', 'no scopes']]);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('role="alert"');
    expect(refused.text).not.toContain('no scopes');
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
    const id = /action="\/app\/settings\/webhooks\/([0-9a-f-]{36})\/disable"/.exec(list.text)![1]!;
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

  it('a form posted without the CSRF token is refused and changes nothing', async () => {
    await owner.browser.get(INTEGRATIONS);
    const refused = await owner.browser.post('/app/settings/api-keys', { name: 'forged', scopes: 'admin' }, { csrf: null });
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('csrf_token_invalid');
    expect((await owner.browser.get(INTEGRATIONS)).text).not.toContain('forged');
  });
});
