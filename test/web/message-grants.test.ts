import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { memberInBrowser, signUpInBrowser, type WebClient } from '../helpers/web-client.js';

/*
 * Access grants on the message page (P-03): the mailbox's owner lets one teammate read one
 * message until a date and withdraws that; the teammate reads it on the page on that grant,
 * and every such read is recorded. The same grants and guard as /api/grants and
 * /api/messages/:id/content?basis=grant.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let ownerToken: string;
let member: WebClient;
let memberUserId: string;
let messageId: string;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  ownerToken = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
  const mailbox = await connectedMailbox(app, ownerToken, 'grants-owner@acme.test', { sync: true });
  app.sandbox.control.createMailbox({ email: 'client@example.com' });
  const sent = await app.api('POST', '/api/messages', {
    token: ownerToken,
    json: { mailboxId: mailbox.id, to: 'client@example.com', subject: 'Contract terms', html: '<p>GRANTED-BODY</p>' },
  });
  expect(sent.status).toBe(201);
  messageId = sent.body.id;
  member = await memberInBrowser(app, owner.browser);
  const members = (await app.api('GET', '/api/members', { token: ownerToken })).body.members as { userId: string; role: string }[];
  memberUserId = members.find((m) => m.role === 'member')!.userId;
});
afterAll(async () => {
  await app?.close();
});

const PAGE = () => `/app/messages/${messageId}`;
const grantRows = async () =>
  ((await app.database.db.execute(sql`select grantee_user_id, revoked_at, reason from gmail_access_grants where message_id = ${messageId}`)) as unknown as {
    rows: { grantee_user_id: string; revoked_at: Date | null; reason: string | null }[];
  }).rows;
const reads = async () =>
  ((await app.database.db.execute(sql`select actor, detail from audit_log where action = 'gmail.content_read' and subject_id = ${messageId}`)) as unknown as {
    rows: { actor: string; detail: { basis: string } }[];
  }).rows;

describe('Message page: letting a teammate read one message', () => {
  it('P-03 a teammate without a grant is refused; the owner grants on the page; the teammate then reads it on the grant, recorded', async () => {
    expect((await member.get(PAGE())).status).toBe(403);
    expect((await member.get(`${PAGE()}/body?basis=grant`)).status).toBe(403);

    const page = await owner.browser.get(PAGE());
    expect(page.status).toBe(200);
    expect(page.text).toContain('Teammates who may read this message');
    expect(page.text).toContain(`<option value="${memberUserId}">`);

    // A period outside 1–90 days is refused on the form, and nothing is granted.
    const refused = await owner.browser.post(`${PAGE()}/grants`, { granteeUserId: memberUserId, days: '91', reason: '' });
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('role="alert"');
    expect(await grantRows()).toEqual([]);

    const granted = await owner.browser.post(`${PAGE()}/grants`, { granteeUserId: memberUserId, days: '3', reason: 'Covering <while away>' });
    expect(granted).toMatchObject({ status: 303, location: `${PAGE()}?notice=grant_created` });
    expect(await grantRows()).toEqual([{ grantee_user_id: memberUserId, revoked_at: null, reason: 'Covering <while away>' }]);
    const listed = await owner.browser.get(granted.location!);
    expect(listed.text).toContain('Your teammate may read this message');
    expect(listed.text).toContain('Covering &lt;while away&gt;');

    const view = await member.get(PAGE());
    expect(view.status).toBe(200);
    expect(view.text).toContain('Contract terms');
    expect(view.text).toContain("its mailbox's owner let you");
    expect(view.text).toContain(`src="${PAGE()}/body?basis=grant"`);
    // The teammate may read, not grant: the sharing form is the owner's alone.
    expect(view.text).not.toContain('Teammates who may read this message');
    const frame = await member.get(`${PAGE()}/body?basis=grant`);
    expect(frame.status).toBe(200);
    expect(frame.text).toContain('GRANTED-BODY');
    expect((await reads()).filter((r) => r.actor === `user:${memberUserId}`).map((r) => r.detail.basis)).toEqual(['grant', 'grant']);
  });

  it('P-03 a teammate cannot grant themselves or others; the owner withdraws the grant and the teammate is refused again', async () => {
    await member.get('/app/contacts');
    const byMember = await member.post(`${PAGE()}/grants`, { granteeUserId: memberUserId, days: '5' });
    expect(byMember.status).toBe(403);
    expect((await grantRows()).filter((g) => g.revoked_at === null)).toHaveLength(1);

    const page = await owner.browser.get(PAGE());
    const revokePath = new RegExp(`action="(${PAGE()}/grants/[0-9a-f-]{36}/revoke)"`).exec(page.text)![1]!;
    await member.get('/app/contacts');
    // The grantee holds the grant but may not withdraw it: only the owner who gave it.
    expect((await member.post(revokePath, {})).status).toBe(403);
    const withdrawn = await owner.browser.post(revokePath, {});
    expect(withdrawn).toMatchObject({ status: 303, location: `${PAGE()}?notice=grant_revoked` });
    expect((await grantRows())[0]!.revoked_at).not.toBeNull();
    expect((await owner.browser.get(withdrawn.location!)).text).toContain('<td>revoked</td>');

    expect((await member.get(PAGE())).status).toBe(403);
    expect((await member.get(`${PAGE()}/body?basis=grant`)).status).toBe(403);
  });
});
