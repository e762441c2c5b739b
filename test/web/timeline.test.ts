import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser } from '../helpers/web-client.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
const setup = { token: '', workspaceId: '' };
const SENDER = 'timeline-sender@acme.test';
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  setup.token = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
  setup.workspaceId = (await app.api('GET', '/api/me', { token: setup.token })).body.workspace.id;
  await app.api('PATCH', '/api/workspace', { token: setup.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});
afterAll(async () => {
  await app?.close();
});
const fixtures = campaignFixtures(() => ({ app, ...setup }));

describe("a contact's timeline page", () => {
  it('P-07 shows campaign opens and clicks marked human / machine / unknown with their reasons, and the consent history', async () => {
    const mailbox = await connectedMailbox(app, setup.token, SENDER);
    const [contact] = await fixtures.audience(1, { prefix: 'tl' });
    const campaignId = await fixtures.launched(mailbox.id, 'Timeline news', [contact!.id]);
    await fixtures.drain(campaignId);
    // An hour later (a hit seconds after sending is a prefetch, not a person).
    await app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${campaignId}::uuid`);
    const message = app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === 'Timeline news')!;
    const body = app.sandbox.control.getMessage(SENDER, message.id).html!;
    const pixel = /\/t\/o\/[A-Za-z0-9_-]+\.gif/.exec(body)![0];
    const click = /\/t\/c\/[A-Za-z0-9_-]+/.exec(body)![0];
    const chrome = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
    expect((await fetch(`${app.baseUrl}${pixel}`, { headers: { 'user-agent': chrome } })).status).toBe(200);
    expect((await fetch(`${app.baseUrl}${pixel}`, { headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)' } })).status).toBe(200);
    expect((await fetch(`${app.baseUrl}${click}`, { headers: { 'user-agent': chrome }, redirect: 'manual' })).status).toBe(302);
    await app.services.tracking.flush();

    const page = await owner.browser.get(`/app/contacts/${contact!.id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Timeline news');
    // Gmail's image proxy hides whether a person opened: unknown, with its reason, beside the human open.
    expect(page.text).toMatch(/opens: 1 human, 0 machine, 1 unknown · clicks: 1 human, 0 machine, 0 unknown/);
    expect(page.text).toMatch(/open · <strong>unknown<\/strong>[^<]*<br><span class="muted">why: google_image_proxy<\/span>/);
    expect(page.text).toMatch(/open · <strong>human<\/strong>[^<]*<br><span class="muted">why: no_machine_signal<\/span>/);
    expect(page.text).toContain('https://acme.test/news');
    expect(page.text).toMatch(/Latest: <span class="status good">opted_in<\/span>/);
    expect(page.text).toContain('signup form');
    expect(page.text).toContain('<span class="status good">not suppressed</span>');
  });
});
