import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { confirmInBrowser, memberInBrowser, signUpInBrowser, WebClient } from '../helpers/web-client.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let ownerToken: string;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  ownerToken = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
});
afterAll(async () => {
  await app?.close();
});

const rows = async <T>(query: ReturnType<typeof sql>) => ((await app.database.db.execute(query)) as unknown as { rows: T[] }).rows;

/** Connect Gmail as a person does: disclosure page → its button → Google's (the sandbox's) consent → our callback → mailboxes page. */
async function connectInBrowser(browser: WebClient, email: string, sync: boolean) {
  if (!app.sandbox.control.getMailbox(email)) app.sandbox.control.createMailbox({ email });
  const disclosure = await browser.get(`/app/mailboxes/connect?sync=${sync}&loginHint=${encodeURIComponent(email)}`);
  expect(disclosure.status).toBe(200);
  const button = /href="(\/app\/mailboxes\/connect\/continue\?[^"]+)"/.exec(disclosure.text)![1]!.replace(/&amp;/g, '&');
  const toGoogle = await browser.get(button);
  expect(toGoogle.status).toBe(303);
  expect(toGoogle.location!.startsWith(app.sandbox.urls.authorize)).toBe(true);
  const consent = await fetch(toGoogle.location!, { redirect: 'manual' });
  const callback = new URL(consent.headers.get('location')!);
  const back = await browser.get(`${callback.pathname}${callback.search}`);
  expect(back.status).toBe(303);
  expect(back.location).toBe('/app/mailboxes?notice=connected');
  return browser.get(back.location!);
}

describe('mailboxes', () => {
  it('P-05 connecting from the browser shows the Limited Use disclosure first, then Google, then the mailbox with its health', async () => {
    const before = await owner.browser.get('/app/mailboxes/connect');
    expect(before.text).toContain('How inboxtrail uses your Gmail');
    expect(before.text).toContain('Limited Use');
    const page = await connectInBrowser(owner.browser, 'owner-web@acme.test', true);
    expect(page.text).toContain('Gmail is connected.');
    expect(page.text).toContain('owner-web@acme.test');
    expect(page.text).toContain('<span class="status good">active</span>');
    expect(page.text).toMatch(/0 of \d+ sent in the last 24 h/);
    const [stored] = await rows<{ disclosure_version: string }>(sql`select disclosure_version from mailboxes where email = 'owner-web@acme.test'`);
    expect(stored!.disclosure_version).toBe('2026-11-01');
  });

  it('a long campaign template saves from the editor (a 100 kB form limit refused it with a bare 413); past the web limit it is a 413, and only for someone signed in', async () => {
    const mailbox = await connectedMailbox(app, ownerToken, `long-template-${Date.now()}@acme.test`);
    const html = `<table>${'<tr><td style="padding:4px">row</td></tr>'.repeat(8_000)}</table>`;
    expect(html.length).toBeGreaterThan(300_000);
    await owner.browser.get('/app/campaigns/new');
    const fields = { name: 'Long template', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi', html, text: '', audience: 'all', intent: 'save' };
    const saved = await owner.browser.post('/app/campaigns', fields);
    expect(saved.status, saved.text.slice(0, 300)).toBe(303);
    const id = /\/app\/campaigns\/([0-9a-f-]{36})/.exec(saved.location!)![1]!;
    expect((await app.api('GET', `/api/campaigns/${id}`, { token: ownerToken })).body.html).toBe(html);
    await owner.browser.get('/app/campaigns/new');
    const tooLarge = await owner.browser.post('/app/campaigns', { ...fields, html: 'x'.repeat(11 * 1024 * 1024) });
    expect(tooLarge.status).toBe(413);
    // Nobody signed in makes us read such a form: sign-in first.
    const stranger = new WebClient(app);
    const unread = await stranger.request('POST', '/app/campaigns', new URLSearchParams({ html: 'x'.repeat(11 * 1024 * 1024) }));
    expect(unread.status).toBe(303);
    expect(unread.location).toMatch(/^\/signin/);
  });

  it('skipping the disclosure (an old or made-up version) shows it again instead of going to Google', async () => {
    const res = await owner.browser.get('/app/mailboxes/connect/continue?sync=false&acknowledge=1999-01-01');
    expect(res.status).toBe(303);
    expect(res.location).toBe('/app/mailboxes/connect?sync=false');
  });

  it('P-05 a link from another site to the continue step (current version and all) shows the disclosure first: no Google, no connection started', async () => {
    const version = (await app.services.policyVersions.currentDisclosure()).version;
    for (const site of ['cross-site', 'same-site', 'none']) {
      const res = await owner.browser.request('GET', `/app/mailboxes/connect/continue?sync=true&acknowledge=${version}`, undefined, { 'sec-fetch-site': site });
      expect(res.status, site).toBe(303);
      expect(res.location, site).toBe('/app/mailboxes/connect?sync=true');
      expect(res.headers.getSetCookie().join('\n'), site).not.toMatch(/connect/i);
    }
    // The disclosure page's own button (a same-origin navigation) goes on to Google.
    const page = await owner.browser.get('/app/mailboxes/connect?sync=true');
    const next = /href="(\/app\/mailboxes\/connect\/continue\?[^"]+)"/.exec(page.text)![1]!.replace(/&amp;/g, '&');
    const toGoogle = await owner.browser.request('GET', next, undefined, { 'sec-fetch-site': 'same-origin' });
    expect(toGoogle.location!.startsWith(app.sandbox.urls.authorize)).toBe(true);
  });

  it('a mailbox that needs reconnecting shows it, with a one-click reconnect straight to Google', async () => {
    await app.database.db.execute(sql`update mailboxes set status = 'needs_reconnect', status_reason = 'invalid_grant' where email = 'owner-web@acme.test'`);
    const page = await owner.browser.get('/app/mailboxes');
    expect(page.text).toContain('<span class="status bad">needs_reconnect</span>');
    const reconnect = /href="(\/app\/mailboxes\/connect\/continue\?[^"]*loginHint=owner-web[^"]+)"/.exec(page.text)![1]!.replace(/&amp;/g, '&');
    const toGoogle = await owner.browser.get(reconnect);
    expect(toGoogle.location!.startsWith(app.sandbox.urls.authorize)).toBe(true);
    const consent = await fetch(toGoogle.location!, { redirect: 'manual' });
    const callback = new URL(consent.headers.get('location')!);
    expect((await owner.browser.get(`${callback.pathname}${callback.search}`)).location).toBe('/app/mailboxes?notice=connected');
    expect((await owner.browser.get('/app/mailboxes')).text).toContain('<span class="status good">active</span>');
  });
});

describe('compose and read 1:1 mail from a contact page', () => {
  it('sends through the mailbox; the message page shows HTML only in a sandboxed frame with its own CSP', async () => {
    app.sandbox.control.createMailbox({ email: 'reader@example.com' });
    const contact = await app.api('POST', '/api/contacts', { token: ownerToken, json: { email: 'reader@example.com', firstName: 'Rea' } });
    const compose = await owner.browser.get(`/app/contacts/${contact.body.id}/compose`);
    expect(compose.text).toContain('owner-web@acme.test');
    const mailboxId = /<option value="([0-9a-f-]{36})"/.exec(compose.text)![1]!;
    const sent = await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, { mailboxId, subject: 'Hello <Rea>', text: 'First line' });
    expect(sent.status).toBe(303);
    expect(sent.location).toBe(`/app/contacts/${contact.body.id}?notice=sent`);
    const inbox = app.sandbox.control.listMessages('reader@example.com');
    expect(inbox.map((m) => m.subject)).toContain('Hello <Rea>');
    const page = await owner.browser.get(sent.location!);
    expect(page.text).toContain('Your mail was sent.');
    expect(page.text).toContain('Hello &lt;Rea&gt;');

    // An HTML mail (sent through the API) is shown only in the frame.
    const htmlMail = await app.api('POST', '/api/messages', {
      token: ownerToken,
      json: { mailboxId, to: 'reader@example.com', subject: 'Styled', html: '<p>Hi</p><script>alert(1)</script><img src="https://tracker.example/p.gif">' },
    });
    expect(htmlMail.status).toBe(201);
    const view = await owner.browser.get(`/app/messages/${htmlMail.body.id}`);
    expect(view.status).toBe(200);
    expect(view.text).toContain(`<iframe class="mail" sandbox="" referrerpolicy="no-referrer"`);
    expect(view.text).not.toContain('<script>alert(1)');
    const frame = await owner.browser.get(`/app/messages/${htmlMail.body.id}/body`);
    expect(frame.headers.get('content-security-policy')).toMatch(/^sandbox; default-src 'none'/);
    expect(frame.headers.get('content-security-policy')).not.toContain('script-src');
  });

  it('the form carries a one-time key: the same form submitted twice, even at once, sends one mail (an attacker\'s note); a new form sends again', async () => {
    app.sandbox.control.createMailbox({ email: 'twice@example.com' });
    const contact = await app.api('POST', '/api/contacts', { token: ownerToken, json: { email: 'twice@example.com' } });
    const compose = await owner.browser.get(`/app/contacts/${contact.body.id}/compose`);
    const mailboxId = /<option value="([0-9a-f-]{36})"/.exec(compose.text)![1]!;
    const sendKey = /name="sendKey" value="([A-Za-z0-9_-]+)"/.exec(compose.text)![1]!;
    const form = { mailboxId, subject: 'Only once', text: 'Hello', sendKey };
    const answers = await Promise.all([owner.browser.post(`/app/contacts/${contact.body.id}/compose`, form), owner.browser.post(`/app/contacts/${contact.body.id}/compose`, form)]);
    // One sends; the other is told it is under way (409) or, once done, gets the same outcome.
    expect(answers.map((a) => a.status).sort()).toEqual(answers.some((a) => a.status === 409) ? [303, 409] : [303, 303]);
    const again = await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, form);
    expect(again.location).toBe(`/app/contacts/${contact.body.id}?notice=sent`);
    expect(app.sandbox.control.listMessages('twice@example.com').filter((m) => m.subject === 'Only once')).toHaveLength(1);

    const fresh = await owner.browser.get(`/app/contacts/${contact.body.id}/compose`);
    const otherKey = /name="sendKey" value="([A-Za-z0-9_-]+)"/.exec(fresh.text)![1]!;
    expect(otherKey).not.toBe(sendKey);
    expect((await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, { ...form, sendKey: otherKey })).status).toBe(303);
    expect(app.sandbox.control.listMessages('twice@example.com').filter((m) => m.subject === 'Only once')).toHaveLength(2);

    // The Back button: the sent form, changed and sent again, is refused once and comes back with a new key.
    const changed = await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, { ...form, text: 'Changed my mind' });
    expect(changed.status).toBe(422);
    expect(changed.text).toContain('This form was sent already');
    const newKey = /name="sendKey" value="([A-Za-z0-9_-]+)"/.exec(changed.text)![1]!;
    expect(newKey).not.toBe(sendKey);
    expect((await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, { ...form, text: 'Changed my mind', sendKey: newKey })).status).toBe(303);
    expect(app.sandbox.control.listMessages('twice@example.com').filter((m) => m.subject === 'Only once')).toHaveLength(3);
  });

  it('P-08 a suppressed recipient is refused on the form and nothing is sent', async () => {
    const contact = await app.api('POST', '/api/contacts', { token: ownerToken, json: { email: 'gone@example.com' } });
    await app.api('POST', '/api/suppressions', { token: ownerToken, json: { email: 'gone@example.com' } });
    const compose = await owner.browser.get(`/app/contacts/${contact.body.id}/compose`);
    const mailboxId = /<option value="([0-9a-f-]{36})"/.exec(compose.text)![1]!;
    const refused = await owner.browser.post(`/app/contacts/${contact.body.id}/compose`, { mailboxId, subject: 'Still there?', text: 'x' });
    expect(refused.status).toBe(409);
    expect(refused.text).toContain('role="alert"');
    expect(refused.text).toContain('Still there?');
    expect(app.sandbox.control.getMailbox('gone@example.com') ? app.sandbox.control.listMessages('gone@example.com') : []).toEqual([]);
    const page = await owner.browser.get(`/app/contacts/${contact.body.id}`);
    expect(page.text).toContain('<span class="status bad">suppressed</span>');
  });
});

describe('CSV import with preview, mapping and the consent column', () => {
  it('P-10 previews the first rows, maps columns, imports, and records opt-ins as consent records', async () => {
    const csv = ['E-mail,Given,Company,consent,consent_source', 'ann@import.test,Ann,Acme,opted_in,trade fair', 'bob@import.test,Bob,Beta,,', 'cy@import.test,<b>Cy</b>,Gamma,opted_in,', 'bad-address,Dee,Delta,opted_in,', 'eve@import.test,Eve,Eps,maybe,'].join('\n');
    await owner.browser.get('/app/contacts/import');
    const preview = await owner.browser.postMultipart('/app/contacts/import/preview', {}, { file: { name: 'people.csv', content: csv } });
    expect(preview.status).toBe(200);
    expect(preview.text).toContain('5 rows');
    expect(preview.text).toContain('&lt;b&gt;Cy&lt;/b&gt;');
    expect(preview.text).toMatch(/<select name="map0">[^]*?<option value="email" selected>/);
    expect(preview.text).toMatch(/<select name="map3">[^]*?<option value="consent" selected>/);
    // "Given" is not a known header: the person maps it to the first name.
    const done = await owner.browser.postMultipart('/app/contacts/import', {
      csv: /name="csv" value="([^"]*)"/.exec(preview.text)![1]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&'),
      map0: 'email',
      map1: 'firstName',
      map2: 'attribute',
      map3: 'consent',
      map4: 'consentSource',
    });
    expect(done.status).toBe(200);
    // The import service's own rules: a row with a bad consent value fails whole and changes nothing.
    expect(done.text).toMatch(/Created<\/th><td>3</);
    expect(done.text).toMatch(/Failed<\/th><td>2</);
    expect(done.text).toMatch(/Consent records added<\/th><td>2</);
    expect(done.text).toContain('consent must be opted_in or opted_out');

    const imported = await rows<{ email: string; first_name: string; attributes: Record<string, string> }>(sql`select email, first_name, attributes from contacts where email like '%@import.test' order by email`);
    expect(imported.map((c) => [c.email, c.first_name, c.attributes.company])).toEqual([
      ['ann@import.test', 'Ann', 'Acme'],
      ['bob@import.test', 'Bob', 'Beta'],
      ['cy@import.test', '<b>Cy</b>', 'Gamma'],
    ]);
    const consents = await rows<{ email: string; status: string; source: string; policy_version: string }>(
      sql`select c.email, r.status, r.source, r.policy_version from consents r join contacts c on c.id = r.contact_id where c.email like '%@import.test' order by c.email`,
    );
    expect(consents.map((c) => [c.email, c.status, c.source])).toEqual([
      ['ann@import.test', 'opted_in', 'trade fair'],
      ['cy@import.test', 'opted_in', 'csv import'],
    ]);
    expect(consents.every((c) => c.policy_version === app.config.policyVersion)).toBe(true);
  });

  it('a header that would make no attribute name is offered as one the service takes, and imports under it', async () => {
    const csv = 'email,2024 Revenue\nrev@import.test,12k\n';
    await owner.browser.get('/app/contacts/import');
    const preview = await owner.browser.postMultipart('/app/contacts/import/preview', {}, { file: { name: 'revenue.csv', content: csv } });
    expect(preview.text).toContain('Attribute “_2024Revenue”');
    const done = await owner.browser.postMultipart('/app/contacts/import', { csv, map0: 'email', map1: 'attribute' });
    expect(done.text).toMatch(/Created<\/th><td>1</);
    const [imported] = await rows<{ attributes: Record<string, string> }>(sql`select attributes from contacts where email = 'rev@import.test'`);
    expect(imported!.attributes).toEqual({ _2024Revenue: '12k' });
  });

  it('a mapping without an email column is shown on the mapping step and imports nothing', async () => {
    await owner.browser.get('/app/contacts/import');
    const preview = await owner.browser.postMultipart('/app/contacts/import/preview', {}, { file: { name: 'x.csv', content: 'email,name\nnomap@import.test,N\n' } });
    const res = await owner.browser.postMultipart('/app/contacts/import', { csv: 'email,name\nnomap@import.test,N\n', map0: 'ignore', map1: 'attribute' });
    expect(preview.status).toBe(200);
    expect(res.status).toBe(400);
    expect(res.text).toContain('exactly one of them');
    expect(await rows(sql`select 1 from contacts where email = 'nomap@import.test'`)).toEqual([]);
  });

  it('an upload without the CSRF token is refused before it is read', async () => {
    await owner.browser.get('/app/contacts/import');
    const form = new FormData();
    form.set('csv', 'email\ncsrf@import.test\n');
    form.set('map0', 'email');
    const res = await owner.browser.request('POST', '/app/contacts/import', form);
    expect(res.status).toBe(403);
    expect(await rows(sql`select 1 from contacts where email = 'csrf@import.test'`)).toEqual([]);
  });
});

describe('suppression list and settings', () => {
  it('adds, searches and removes (admin, with a note) an address; a member cannot remove', async () => {
    await owner.browser.get('/app/suppressions');
    const added = await owner.browser.post('/app/suppressions', { email: 'Blocked@Example.com', reason: 'manual', note: 'asked by phone' });
    expect(added.location).toBe('/app/suppressions?notice=suppressed');
    const found = await owner.browser.get('/app/suppressions?email=blocked%40example.com');
    expect(found.text).toMatch(/blocked@example.com<\/td>/i);
    expect(found.text).toContain('added by a member');
    const id = /action="\/app\/suppressions\/([0-9a-f-]{36})\/remove"/.exec(found.text)![1]!;

    // Invite a member through the settings page; they join through the invitation page.
    await owner.browser.get('/app/settings');
    const invited = await owner.browser.post('/app/settings/invitations', { email: 'member@example.com', role: 'member' });
    expect(invited.status).toBe(201);
    const code = /<code>([A-Za-z0-9_-]{20,})<\/code>/.exec(invited.text)![1]!;
    const member = new WebClient(app);
    await member.get('/invitations/accept');
    const asked = await member.post('/invitations/accept', { token: code, password: '' });
    expect([asked.status, asked.location]).toEqual([303, '/signup/verify?invited=1']);
    // The code step asks for the new account's password, and refuses to go on without one.
    expect((await member.get('/signup/verify?invited=1')).text).toContain('Choose a password');
    const joined = await confirmInBrowser(app, member, 'member@example.com', { password: 'member-password-long', name: 'Mem <Ber>' });
    expect(joined.location).toBe('/app/mailboxes?notice=welcome');
    const memberView = await member.get('/app/suppressions?email=blocked%40example.com');
    expect(memberView.text).toContain('admins remove');
    const refused = await member.post(`/app/suppressions/${id}/remove`, { note: 'let me' });
    expect(refused.status).toBe(403);
    expect((await owner.browser.get('/app/suppressions?email=blocked%40example.com')).text).toMatch(/blocked@example.com<\/td>/i);

    await owner.browser.get('/app/suppressions');
    const noNote = await owner.browser.post(`/app/suppressions/${id}/remove`, { note: '' });
    expect(noNote.status).toBe(400);
    const removed = await owner.browser.post(`/app/suppressions/${id}/remove`, { note: 'confirmed by phone' });
    expect(removed.location).toBe('/app/suppressions?notice=unsuppressed');
    expect((await owner.browser.get('/app/suppressions?email=blocked%40example.com')).text).not.toMatch(/blocked@example.com<\/td>/i);

    const settings = await owner.browser.get('/app/settings');
    expect(settings.text).toContain('Mem &lt;Ber&gt;');
    expect(settings.text).toMatch(/member@example.com<\/td><td>member</);
  });

  it('owners set the workspace name and postal address; members only see them', async () => {
    await owner.browser.get('/app/settings');
    const saved = await owner.browser.post('/app/settings/workspace', { name: 'Acme & Co', postalAddress: '1 Main St, Springfield' });
    expect(saved.location).toBe('/app/settings?notice=saved');
    const me = await app.api('GET', '/api/me', { token: ownerToken });
    expect(me.body.workspace).toMatchObject({ name: 'Acme & Co', postalAddress: '1 Main St, Springfield' });
    const page = await owner.browser.get('/app/settings');
    expect(page.text).toContain('Acme &amp; Co');
    const empty = await owner.browser.post('/app/settings/workspace', { name: '', postalAddress: '' });
    expect(empty.status).toBe(400);
    expect((await app.api('GET', '/api/me', { token: ownerToken })).body.workspace.name).toBe('Acme & Co');
  });
});

describe("a campaign of a teammate's mailbox", () => {
  it('shows a member no button the service would refuse (edit, check and launch, cancel a draft, resume), and says why', async () => {
    const mailbox = await connectedMailbox(app, ownerToken, 'owner-campaigns@acme.test');
    const contact = await app.api('POST', '/api/contacts', { token: ownerToken, json: { email: 'teammate-view@contoso.test' } });
    const draft = await app.api('POST', '/api/campaigns', {
      token: ownerToken,
      json: { name: 'Owner draft', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi', text: 'x', contactIds: [contact.body.id] },
    });
    expect(draft.status, draft.text).toBe(201);
    const path = `/app/campaigns/${draft.body.id}`;

    const asOwner = await owner.browser.get(path);
    expect(asOwner.text).toContain(`href="${path}/edit"`);
    expect(asOwner.text).toContain(`action="${path}/cancel"`);

    const member = await memberInBrowser(app, owner.browser);
    const asMember = await member.get(path);
    expect(asMember.status).toBe(200);
    expect(asMember.text).not.toContain(`href="${path}/edit"`);
    expect(asMember.text).not.toContain(`action="${path}/preflight"`);
    expect(asMember.text).not.toContain(`action="${path}/cancel"`);
    expect(asMember.text).toContain("sends from a teammate's mailbox");
  });
});
