import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-13 for contacts, campaigns and mailboxes: a deletion hides the item from every API at
 * once; the purge, after PURGE_AFTER_DAYS on the app's clock, removes it for real, and an
 * opt-out survives as a keyed hash only.
 */

const DAY = 86_400_000;
let clock = Date.now();
let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));
const relative = () => createTrackingUrls(createTokenCodec(app.config.trackingSecrets), '');

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
  owner = await signUp(app);
  mailbox = await connectedMailbox(app, owner.token, `sender-${Date.now()}@acme.test`);
  expect((await app.api('PATCH', '/api/workspace', { token: owner.token, json: { postalAddress: '1 Main St, Springfield' } })).status).toBe(200);
});
afterAll(async () => {
  await app?.close();
});

const api = (method: string, path: string, json?: unknown) => app.api(method, path, { token: owner.token, json });

async function auditActions(subjectId: string) {
  return rowsOf<{ action: string; detail: Record<string, unknown> }>(
    await db().execute(sql`select action, detail from audit_log where subject_id = ${subjectId} order by at`),
  );
}

/** A contact that got a campaign mail, opened and clicked it, got a 1:1 mail, then unsubscribed. */
async function mailedAndOptedOut() {
  const [contact] = await fixtures.audience(1, { prefix: 'p13' });
  const campaignId = await fixtures.launched(mailbox.id, 'P-13 mail', [contact!.id]);
  await fixtures.drain(campaignId);
  const [send] = rowsOf<{ id: string; recipient_id: string }>(
    await db().execute(sql`select id, recipient_id from campaign_sends where campaign_id = ${campaignId}::uuid`),
  );
  const urls = relative();
  await fetch(`${app.baseUrl}${urls.openPixel(send!.id)}`, { headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)' } });
  await fetch(`${app.baseUrl}${urls.click(send!.id, 0)}`, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)' } });
  await app.services.tracking.flush();
  const direct = await api('POST', '/api/messages', { mailboxId: mailbox.id, to: [contact!.email], subject: 'P-13 1:1', text: 'Hi' });
  expect(direct.status, direct.text).toBe(201);
  // Also copied blind on another person's mail: the Bcc address is kept (bounce matching), so it must go with the rest.
  const blind = await api('POST', '/api/messages', { mailboxId: mailbox.id, to: ['someone-else@contoso.test'], bcc: [contact!.email], subject: 'P-13 bcc', text: 'Hi' });
  expect(blind.status, blind.text).toBe(201);
  const optOut = await app.api('POST', urls.unsubscribe(send!.recipient_id, campaignId), {
    body: 'List-Unsubscribe=One-Click',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  expect(optOut.status).toBe(200);
  return { contact: contact!, campaignId };
}

describe('P-13 deletion and purge', () => {
  it('P-13 a deleted contact vanishes from every list and get at once, and is never mailed', async () => {
    const [kept, gone] = await fixtures.audience(2, { prefix: 'vanish' });
    const campaign = await api('POST', '/api/campaigns', { name: 'Both', kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi', html: '<p>Hi</p>', contactIds: [kept!.id, gone!.id] });
    expect((await api('POST', `/api/campaigns/${campaign.body.id}/preflight`)).body).toMatchObject({ total: 2 });

    expect((await api('DELETE', `/api/contacts/${gone!.id}`)).status).toBe(204);
    expect((await api('GET', `/api/contacts/${gone!.id}`)).status).toBe(404);
    expect((await api('GET', `/api/contacts/${gone!.id}/consents`)).status).toBe(404);
    expect((await api('PATCH', `/api/contacts/${gone!.id}`, { firstName: 'Back' })).status).toBe(404);
    expect((await api('POST', `/api/contacts/${gone!.id}/consents`, { status: 'opted_in', source: 'x' })).status).toBe(404);
    expect((await api('DELETE', `/api/contacts/${gone!.id}`)).status).toBe(404);
    const listed = await api('GET', `/api/contacts?q=${encodeURIComponent(gone!.email)}`);
    expect(listed.body.contacts).toEqual([]);
    expect((await api('POST', `/api/campaigns/${campaign.body.id}/preflight`)).body).toMatchObject({ total: 1 });

    // Launched now, the audience holds only the live contact: the deleted one is never mailed.
    expect((await api('POST', `/api/campaigns/${campaign.body.id}/launch`, {})).status).toBe(200);
    await fixtures.drain(campaign.body.id);
    expect([...fixtures.sentTo(mailbox.email, 'Hi').keys()]).toEqual([kept!.email]);

    // The request is audited with its purge date, PURGE_AFTER_DAYS (30) ahead on the app's clock.
    const requested = (await auditActions(gone!.id)).find((a) => a.action === 'deletion.requested');
    expect(requested).toMatchObject({ action: 'deletion.requested' });
    expect(new Date(String(requested!.detail.purgeAfter)).getTime()).toBe(clock + 30 * DAY);
  });

  it('P-13 a contact deleted while its campaign is queued is skipped at the send gate', async () => {
    const [contact] = await fixtures.audience(1, { prefix: 'queued' });
    const paused = await api('POST', '/api/campaigns', { name: 'Queued', kind: 'marketing', mailboxId: mailbox.id, subject: 'Queued', html: '<p>Hi</p>', contactIds: [contact!.id] });
    expect((await api('POST', `/api/campaigns/${paused.body.id}/launch`, { startAt: new Date(clock + 3_600_000).toISOString() })).status).toBe(200);
    expect((await api('DELETE', `/api/contacts/${contact!.id}`)).status).toBe(204);
    clock += 2 * 3_600_000;
    await fixtures.drain(paused.body.id);
    clock -= 2 * 3_600_000;
    expect(fixtures.sentTo(mailbox.email, 'Queued').size).toBe(0);
    expect(await fixtures.ledger(paused.body.id)).toMatchObject([{ status: 'skipped', skip_reason: 'contact_deleted' }]);
  });

  it('P-13 the address of a deleted contact can be a new contact at once', async () => {
    const created = await api('POST', '/api/contacts', { email: 'again@example.test' });
    expect((await api('DELETE', `/api/contacts/${created.body.id}`)).status).toBe(204);
    const again = await api('POST', '/api/contacts', { email: 'Again@example.test' });
    expect(again.status, again.text).toBe(201);
    expect(again.body.id).not.toBe(created.body.id);
    const imported = await app.api('POST', '/api/contacts/import', { token: owner.token, body: 'email,firstName\nagain@example.test,Ann\n', headers: { 'content-type': 'text/csv' } });
    expect(imported.body).toMatchObject({ created: 0, updated: 1 });
    expect((await api('GET', `/api/contacts/${again.body.id}`)).body.firstName).toBe('Ann');
  });

  it('P-13 after 30 simulated days nothing of a deleted contact is left but the keyed hash, and the address is still refused', async () => {
    const { contact, campaignId } = await mailedAndOptedOut();
    const address = contact.email.toLowerCase();
    // The click came seconds after the send, so its verdict may be machine; what matters is that the totals survive the purge.
    const statsBefore = (await api('GET', `/api/campaigns/${campaignId}/stats`)).body;
    const clicksBefore = statsBefore.clicks;
    expect(clicksBefore.human + clicksBefore.machine + clicksBefore.unknown).toBe(1);
    expect(statsBefore.sent).toBe(1);
    expect(Object.keys(await tablesMentioning(db(), address)).sort()).toEqual(
      expect.arrayContaining(['campaign_sends', 'contacts', 'messages', 'recipients', 'suppressions']),
    );

    expect((await api('DELETE', `/api/contacts/${contact.id}`)).status).toBe(204);
    // Not yet due: a purge today removes nothing.
    expect(await app.services.purge.runOnce()).toMatchObject({ contact: 0 });
    expect(await tablesMentioning(db(), address)).toHaveProperty('contacts');

    clock += 30 * DAY + 1000;
    try {
      // (Contacts deleted by the earlier tests of this file are due too.)
      expect((await app.services.purge.runOnce()).contact).toBeGreaterThanOrEqual(1);
      expect(await tablesMentioning(db(), address)).toEqual({});

      // What is left is the opt-out, as an HMAC under the server key — not a bare SHA-256 a dictionary reverses.
      const keyed = createAddressHasher(app.config.privacy.suppressionHashKey)(address);
      expect(keyed).not.toBe(createHash('sha256').update(address).digest('hex'));
      expect(await tablesMentioning(db(), keyed)).toEqual({ suppressions: 1, audit_log: expect.any(Number) });
      expect(await tablesMentioning(db(), createHash('sha256').update(address).digest('hex'))).toEqual({});
      const [completed] = (await auditActions(contact.id)).filter((a) => a.action === 'deletion.completed');
      expect(completed!.detail).toMatchObject({ removed: { contacts: 1, recipients: 1, sends: 1, consents: 2, suppressionAddressesHashed: 1 } });
      expect((completed!.detail.removed as Record<string, number>).trackingEvents).toBeGreaterThanOrEqual(2);
      // The campaign's aggregate counts stay (they name nobody): the sent total too, beside the clicks it explains.
      const statsAfter = (await api('GET', `/api/campaigns/${campaignId}/stats`)).body;
      expect(statsAfter.clicks).toEqual(clicksBefore);
      expect(statsAfter.sent).toBe(statsBefore.sent);
      expect(statsAfter.unsubscribed).toBe(statsBefore.unsubscribed);

      // Purging again finds nothing: idempotent.
      expect(await app.services.purge.runOnce()).toEqual({ mailbox: 0, contact: 0, campaign: 0, workspace: 0, user: 0 });

      // The opt-out still holds: a new contact with the address is counted suppressed, and 1:1 mail is refused.
      const back = await api('POST', '/api/contacts', { email: contact.email });
      expect(back.status).toBe(201);
      await api('POST', `/api/contacts/${back.body.id}/consents`, { status: 'opted_in', source: 'form' });
      const campaign = await api('POST', '/api/campaigns', { name: 'Again', kind: 'marketing', mailboxId: mailbox.id, subject: 'Again', html: '<p>Hi</p>', contactIds: [back.body.id] });
      expect((await api('POST', `/api/campaigns/${campaign.body.id}/preflight`)).body).toMatchObject({ total: 1, suppressed: 1 });
      expect((await api('POST', `/api/campaigns/${campaign.body.id}/launch`, {})).status).toBe(200);
      await fixtures.drain(campaign.body.id);
      expect(await fixtures.ledger(campaign.body.id)).toMatchObject([{ status: 'skipped', skip_reason: 'suppressed' }]);
      const direct = await api('POST', '/api/messages', { mailboxId: mailbox.id, to: [contact.email.toUpperCase()], subject: 'Still?', text: 'Hi' });
      expect(direct.status).toBe(409);
      expect(direct.body.error.code).toBe('recipient_suppressed');
      // The suppression list shows the entry without an address; looking the address up still finds it.
      const entries = await api('GET', `/api/suppressions?email=${encodeURIComponent(contact.email)}`);
      expect(entries.body.suppressions).toMatchObject([{ email: null, scope: 'all', reason: 'unsubscribe' }]);
    } finally {
      clock -= 30 * DAY + 1000;
    }
  });
});
