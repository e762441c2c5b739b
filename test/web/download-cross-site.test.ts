import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser } from '../helpers/web-client.js';

/*
 * The web app's downloads are GETs the session cookie authenticates, and SameSite=Lax sends
 * that cookie on another site's top-level navigation: a page elsewhere could make a signed-in
 * person's browser download a campaign's per-recipient results, the compliance report, their
 * own data, or a legal disclosure (whose download is recorded as made). A request the browser
 * marks `Sec-Fetch-Site: cross-site` is now refused, 403 `cross_site_download`, before anything
 * is read; our own pages (`same-origin`), a typed address or bookmark (`none`) and clients that
 * send no such header download as before. The API reads no cookie: an API key's download is
 * unaffected by the header.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let token: string;
let campaignId: string;
let legalRequestId: string;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  token = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
  const mailbox = await connectedMailbox(app, token, 'downloads@acme.test');
  const contact = await app.api('POST', '/api/contacts', { token, json: { email: 'reader@contoso.test' } });
  const draft = await app.api('POST', '/api/campaigns', { token, json: { name: 'Exported', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi', text: 'x', contactIds: [contact.body.id] } });
  campaignId = draft.body.id;
  await owner.browser.get('/app/settings/legal-requests');
  const saved = await owner.browser.post('/app/settings/legal-requests', { authority: 'Court', legalBasis: 'Order 1', reference: 'CASE-X', addresses: 'reader@contoso.test', from: '2026-01-01', to: '2026-12-31', kinds: 'contacts' });
  expect(saved.status, saved.text.slice(0, 300)).toBe(303);
  legalRequestId = (await app.api('GET', '/api/privacy/legal-requests', { token })).body.legalRequests[0].id;
}, 60_000);
afterAll(async () => {
  await app?.close();
});

const downloads = () => [
  `/app/campaigns/${campaignId}/results.csv`,
  '/app/settings/compliance-report.csv',
  '/app/account/export.json',
  `/app/settings/legal-requests/${legalRequestId}/disclosure.json`,
];

const lastDisclosedAt = async () =>
  ((await app.api('GET', '/api/privacy/legal-requests', { token })).body.legalRequests as { id: string; lastDisclosedAt: string | null }[]).find((r) => r.id === legalRequestId)!.lastDisclosedAt;

describe('a download another site starts', () => {
  it('is refused with 403 cross_site_download and reads nothing (the disclosure is not recorded as made)', async () => {
    for (const path of downloads()) {
      const res = await owner.browser.request('GET', path, undefined, { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' });
      expect([path, res.status], res.text.slice(0, 200)).toEqual([path, 403]);
      expect(res.headers.get('content-disposition')).toBeNull();
      expect(res.text).toContain('<code>cross_site_download</code>');
      expect(res.text).toContain('not from a link on another site');
    }
    expect(await lastDisclosedAt()).toBeNull();
  });

  it('from our own pages, typed in or bookmarked, or from a client that does not say: downloads as before', async () => {
    for (const site of ['same-origin', 'none', undefined]) {
      for (const path of downloads()) {
        const res = await owner.browser.request('GET', path, undefined, site ? { 'sec-fetch-site': site } : {});
        expect([path, site, res.status]).toEqual([path, site, 200]);
        expect(res.headers.get('content-disposition')).toMatch(/^attachment;/);
      }
    }
    expect(await lastDisclosedAt()).not.toBeNull();
  });

  it('an API key (no cookie) downloads whatever the header says: the API reads no cookie', async () => {
    const key = await app.api('POST', '/api/api-keys', { token, json: { name: 'export', scopes: ['read'] } });
    expect(key.status).toBe(201);
    const res = await fetch(`${app.baseUrl}/api/campaigns/${campaignId}/results.csv`, { headers: { authorization: `Bearer ${key.body.key}`, 'sec-fetch-site': 'cross-site' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/csv');
    await res.text();
  });
});
