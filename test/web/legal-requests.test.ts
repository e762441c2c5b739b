import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { memberInBrowser, signUpInBrowser, type WebClient } from '../helpers/web-client.js';

/*
 * Settings → legal requests (P-16) on the pages: owners and admins record a request with its
 * scope and download its disclosure, through the service and schema of
 * /api/privacy/legal-requests; members are refused as the API refuses them.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let token: string;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  token = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
});
afterAll(async () => {
  await app?.close();
});

const PAGE = '/app/settings/legal-requests';
const recorded = async () => (await app.api('GET', '/api/privacy/legal-requests', { token })).body.legalRequests as { id: string; reference: string; scope: Record<string, unknown> }[];

function postForm(browser: WebClient, fields: [string, string][], csrf: string | null = browser.csrfToken()) {
  const form = new URLSearchParams(fields);
  if (csrf !== null) form.set('_csrf', csrf);
  return browser.request('POST', PAGE, form);
}

const BASE: [string, string][] = [['authority', 'Court of <Example>'], ['legalBasis', 'Order 12/2026'], ['from', '2026-01-01'], ['to', '2026-12-31']];

describe('Legal requests page', () => {
  it('records a request with its scope (addresses, contact ids, kinds; the "to" day included) and downloads its disclosure', async () => {
    const contact = await app.api('POST', '/api/contacts', { token, json: { email: 'subject@example.com', firstName: 'Sam' } });
    expect((await owner.browser.get('/app/settings/integrations')).text).toContain(`href="${PAGE}"`);
    await owner.browser.get(PAGE);
    const saved = await postForm(owner.browser, [...BASE, ['reference', 'CASE-1'], ['addresses', 'Other@Example.com\nsubject@example.com'], ['contactIds', contact.body.id], ['kinds', 'contacts'], ['kinds', 'consents']]);
    expect(saved).toMatchObject({ status: 303, location: `${PAGE}?notice=saved` });
    const [request] = await recorded();
    expect(request!.reference).toBe('CASE-1');
    expect(request!.scope).toMatchObject({
      addresses: ['other@example.com', 'subject@example.com'],
      contactIds: [contact.body.id],
      from: '2026-01-01T00:00:00.000Z',
      to: '2027-01-01T00:00:00.000Z',
      kinds: ['contacts', 'consents'],
    });

    const list = await owner.browser.get(PAGE);
    expect(list.text).toContain('Court of &lt;Example&gt;');
    const download = await owner.browser.get(`${PAGE}/${request!.id}/disclosure.json`);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(download.headers.get('content-disposition')).toBe(`attachment; filename="inboxtrail-legal-disclosure-${request!.id}.json"`);
    const document = JSON.parse(download.text) as { format: string; request: { reference: string }; contacts: { email: string }[] };
    expect(document.format).toBe('inboxtrail-legal-disclosure/1');
    expect(document.request.reference).toBe('CASE-1');
    expect(document.contacts.map((c) => c.email)).toEqual(['subject@example.com']);
    expect((await owner.browser.get(PAGE)).text).toMatch(/last \d{4}-\d{2}-\d{2}/);
  });

  it('a request without kinds is a 400 and one naming an unknown contact a 422, on the form with its values; nothing is recorded', async () => {
    const before = (await recorded()).length;
    await owner.browser.get(PAGE);
    const noKinds = await postForm(owner.browser, [...BASE, ['reference', 'CASE-NOKINDS'], ['addresses', 'x@example.com']]);
    expect(noKinds.status).toBe(400);
    expect(noKinds.text).toMatch(/role="alert">The request is not valid: scope.kinds:/);
    expect(noKinds.text).toContain('value="CASE-NOKINDS"');
    const unknown = await postForm(owner.browser, [...BASE, ['reference', 'CASE-UNKNOWN'], ['contactIds', '00000000-0000-4000-8000-000000000000'], ['kinds', 'contacts']]);
    expect(unknown.status).toBe(422);
    expect(unknown.text).toContain('role="alert">The scope names contacts this workspace does not have');
    // A day that does not exist is refused on the form with the field named (it threw a 500 before), never rolled over.
    for (const [field, value] of [['from', '2026-13-45'], ['to', '2026-02-30']] as const) {
      const fields = BASE.filter(([name]) => name !== field);
      const badDay = await postForm(owner.browser, [...fields, [field, value], ['reference', `CASE-DAY-${field}`], ['addresses', 'x@example.com'], ['kinds', 'contacts']]);
      expect([field, badDay.status]).toEqual([field, 400]);
      expect(badDay.text).toMatch(new RegExp(`role="alert">The request is not valid: scope.${field}:`));
      expect(badDay.text).toContain(`name="${field}" value="${value}"`);
    }
    expect((await recorded()).length).toBe(before);
  });

  it('a refused form comes back as it was sent: text (escaped), ticked mailboxes and kinds, the rest unticked', async () => {
    const mailbox = await connectedMailbox(app, token, 'legal-box@example.com');
    const before = (await recorded()).length;
    await owner.browser.get(PAGE);
    const sent: [string, string][] = [
      ...BASE,
      ['reference', 'CASE-"KEEP"'],
      ['addresses', 'a@example.com\n<b>not an address</b>'],
      ['contactIds', 'not-a-uuid'],
      ['mailboxIds', mailbox.id],
      ['kinds', 'consents'],
      ['kinds', 'suppressions'],
    ];
    const refused = await postForm(owner.browser, sent);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('role="alert">The request is not valid');
    const box = (name: string, value: string) => new RegExp(`<input type="checkbox" name="${name}" value="${value}"( checked)?>`).exec(refused.text)?.[1] === ' checked';
    expect(box('mailboxIds', mailbox.id)).toBe(true);
    expect(Object.fromEntries(['contacts', 'consents', 'messages', 'suppressions'].map((k) => [k, box('kinds', k)]))).toEqual({ contacts: false, consents: true, messages: false, suppressions: true });
    expect(refused.text).toContain('<input name="authority" value="Court of &lt;Example&gt;"');
    expect(refused.text).toContain('<input name="reference" value="CASE-&quot;KEEP&quot;"');
    expect(refused.text).toContain('<textarea name="addresses">a@example.com\n&lt;b&gt;not an address&lt;/b&gt;</textarea>');
    expect(refused.text).toContain('<textarea name="contactIds">not-a-uuid</textarea>');
    expect(refused.text).toContain('name="from" value="2026-01-01"');
    expect(refused.text).toContain('name="to" value="2026-12-31"');
    // One box ticked arrives as a single value, not a list: it is kept too.
    const one = await postForm(owner.browser, [...BASE, ['reference', 'CASE-ONE'], ['contactIds', 'not-a-uuid'], ['kinds', 'messages']]);
    expect(one.status).toBe(400);
    expect(one.text).toContain('<input type="checkbox" name="kinds" value="messages" checked>');
    expect(one.text).toContain('<input type="checkbox" name="kinds" value="consents">');
    // A fresh page has nothing ticked.
    expect((await owner.browser.get(PAGE)).text).not.toContain(' checked>');
    expect((await recorded()).length).toBe(before);
  });

  it('is refused to members (403) and without the CSRF token (403); nothing is recorded', async () => {
    const before = (await recorded()).length;
    await owner.browser.get(PAGE);
    const forged = await postForm(owner.browser, [...BASE, ['reference', 'FORGED'], ['addresses', 'x@example.com'], ['kinds', 'contacts']], null);
    expect(forged.status).toBe(403);
    expect(forged.text).toContain('csrf_token_invalid');

    const member = await memberInBrowser(app, owner.browser);
    const page = await member.get(PAGE);
    expect(page.status).toBe(403);
    expect(page.text).toContain('Only owners and admins see and record legal requests');
    expect((await member.get('/app/settings/integrations')).text).not.toContain(`href="${PAGE}"`);
    const [request] = await recorded();
    expect((await member.get(`${PAGE}/${request!.id}/disclosure.json`)).status).toBe(403);
    await member.get('/app/account');
    expect((await postForm(member, [...BASE, ['reference', 'BY-MEMBER'], ['addresses', 'x@example.com'], ['kinds', 'contacts']])).status).toBe(403);
    expect((await recorded()).length).toBe(before);
  });
});
