import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { readChunked } from '../helpers/subject-data.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * A contact whose address changed (PATCH) is still one person: the purge (P-13) removes what
 * its old address holds too, and an export (P-12) or a legal disclosure (P-16) shows its
 * history from before the change. An old address that another live contact holds now is
 * that contact's, and stays out of both. (An attacker's findings: the old address was left
 * in `recipients` and, in plain text, in `suppressions`; the export had no sends or opens.)
 */

const DAY = 86_400_000;
let clock = Date.now();
let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));
const relative = () => createTrackingUrls(createTokenCodec(app.config.trackingSecrets), '');
const api = (method: string, path: string, json?: unknown) => app.api(method, path, { token: owner.token, json });

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
  owner = await signUp(app);
  mailbox = await connectedMailbox(app, owner.token, `sender-${Date.now()}@acme.test`);
  expect((await app.api('PATCH', '/api/workspace', { token: owner.token, json: { postalAddress: '1 Main St, Springfield' } })).status).toBe(200);
});
afterAll(async () => {
  await app?.close();
});

/** A contact mailed by a campaign (opened), then moved to `new-<old address>`. */
async function mailedThenMoved(prefix: string, options: { optOut?: boolean } = {}) {
  const [contact] = await fixtures.audience(1, { prefix });
  const oldAddress = contact!.email.toLowerCase();
  const campaignId = await fixtures.launched(mailbox.id, `Before the move (${prefix})`, [contact!.id]);
  await fixtures.drain(campaignId);
  const [send] = rowsOf<{ id: string; recipient_id: string; contact_id: string }>(
    await db().execute(sql`select id, recipient_id, contact_id from campaign_sends where campaign_id = ${campaignId}::uuid`),
  );
  expect(send!.contact_id).toBe(contact!.id);
  await fetch(`${app.baseUrl}${relative().openPixel(send!.id)}`, { headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)' } });
  await app.services.tracking.flush();
  if (options.optOut) {
    const optOut = await app.api('POST', relative().unsubscribe(send!.recipient_id, campaignId), {
      body: 'List-Unsubscribe=One-Click',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(optOut.status).toBe(200);
  }
  const newAddress = `new-${oldAddress}`;
  const moved = await api('PATCH', `/api/contacts/${contact!.id}`, { email: newAddress });
  expect(moved.status, moved.text).toBe(200);
  return { contact: contact!, oldAddress, newAddress, campaignId, send: send! };
}

/** Runs the purge with the clock past every purge date, then puts the clock back. */
async function purgedLater<T>(check: () => Promise<T>): Promise<T> {
  clock += 30 * DAY + 1000;
  try {
    expect((await app.services.purge.runOnce()).contact).toBeGreaterThanOrEqual(1);
    return await check();
  } finally {
    clock -= 30 * DAY + 1000;
  }
}

async function exportOf(address: string) {
  const response = await fetch(`${app.baseUrl}/api/privacy/recipients/export?email=${encodeURIComponent(address)}`, { headers: { authorization: `Bearer ${owner.token}` } });
  expect(response.status).toBe(200);
  return JSON.parse((await readChunked(response)).text);
}

describe('P-13 the purge of a contact whose address changed', () => {
  it('P-13 a contact whose address changed leaves nothing of its old address after the purge (recipient row, opt-out in plain text)', async () => {
    const { contact, oldAddress, newAddress, campaignId, send } = await mailedThenMoved('moved', { optOut: true });
    // Stats read: the recipient's rollups exist too.
    await api('GET', `/api/campaigns/${campaignId}/stats`);
    expect((await api('DELETE', `/api/contacts/${contact.id}`)).status).toBe(204);
    const left = await purgedLater(async () => ({
      newAddress: await tablesMentioning(db(), newAddress),
      recipientId: await tablesMentioning(db(), send.recipient_id),
      oldAddress: await tablesMentioning(db(), oldAddress),
    }));
    // The audit log keeps the opt-out's actor (`recipient:<id>`): ids only, the evidence of what was done.
    expect(left).toEqual({ newAddress: {}, recipientId: { audit_log: expect.any(Number) }, oldAddress: {} });
    // The opt-out outlives the contact, as the keyed hash of the address it was made by.
    const [kept] = rowsOf<{ n: number }>(
      await db().execute(sql`select count(*)::int as n from suppressions where workspace_id = ${owner.workspaceId}::uuid and email is null and address_hash is not null`),
    );
    expect(Number(kept!.n)).toBeGreaterThanOrEqual(1);
  });

  it('P-13 an old address that another live contact holds now stays theirs: its recipient row and opt-out are kept, the purged contact’s own sends go', async () => {
    const { contact, oldAddress, send } = await mailedThenMoved('handed-on');
    const heir = await api('POST', '/api/contacts', { email: oldAddress });
    expect(heir.status, heir.text).toBe(201);
    expect((await api('POST', '/api/suppressions', { email: oldAddress })).status).toBe(201);
    expect((await api('DELETE', `/api/contacts/${contact.id}`)).status).toBe(204);
    const after = await purgedLater(async () => ({
      sends: rowsOf(await db().execute(sql`select id from campaign_sends where id = ${send.id}::uuid`)).length,
      recipients: rowsOf(await db().execute(sql`select id from recipients where id = ${send.recipient_id}::uuid`)).length,
      suppressions: rowsOf(await db().execute(sql`select id from suppressions where workspace_id = ${owner.workspaceId}::uuid and lower(email) = ${oldAddress}`)).length,
      heir: (await api('GET', `/api/contacts/${heir.body.id}`)).status,
    }));
    expect(after).toEqual({ sends: 0, recipients: 1, suppressions: 1, heir: 200 });
  });
});

describe('P-12 / P-16 the history of a contact from before an address change', () => {
  it('P-12 the export of a contact includes the campaign mail and tracking the workspace holds under that contact, from before an address change', async () => {
    const { contact, oldAddress, newAddress, send } = await mailedThenMoved('dsar-moved');
    const doc = await exportOf(newAddress);
    expect(doc.contacts.map((c: { id: string }) => c.id)).toEqual([contact.id]);
    // The ledger row names this contact by id (the purge deletes it as theirs), and its open is theirs too.
    expect({
      sends: doc.campaign_sends.map((s: { id: string }) => s.id),
      trackingEvents: doc.tracking_events.length,
      messagesTo: doc.messages.map((m: { toAddresses: string[] }) => m.toAddresses),
    }).toEqual({ sends: [send.id], trackingEvents: 1, messagesTo: [[oldAddress]] });
  });

  it('P-12 an old address another live contact holds now is not exported with the contact that left it: that contact’s opt-out stays out', async () => {
    const { contact, oldAddress, newAddress, send } = await mailedThenMoved('dsar-handed-on');
    expect((await api('POST', '/api/contacts', { email: oldAddress })).status).toBe(201);
    expect((await api('POST', '/api/suppressions', { email: oldAddress })).status).toBe(201);
    const doc = await exportOf(newAddress);
    expect({
      contacts: doc.contacts.map((c: { id: string }) => c.id),
      sends: doc.campaign_sends.map((s: { id: string }) => s.id),
      suppressions: doc.suppressions,
    }).toEqual({ contacts: [contact.id], sends: [send.id], suppressions: [] });
  });

  it('P-16 a legal request naming a contact by id discloses its campaign mail and tracking from before an address change', async () => {
    const { contact, send } = await mailedThenMoved('legal-moved');
    const recorded = await api('POST', '/api/privacy/legal-requests', {
      authority: 'Amtsgericht Berlin',
      legalBasis: 'Court order',
      reference: 'AZ 1/26',
      scope: { contactIds: [contact.id], from: new Date(clock - DAY).toISOString(), to: new Date(clock + DAY).toISOString(), kinds: ['campaign_sends', 'tracking_events', 'messages'] },
    });
    expect(recorded.status, recorded.text).toBe(201);
    const response = await fetch(`${app.baseUrl}/api/privacy/legal-requests/${recorded.body.id}/disclosure`, { headers: { authorization: `Bearer ${owner.token}` } });
    expect(response.status).toBe(200);
    const doc = JSON.parse((await readChunked(response)).text);
    expect({
      sends: doc.campaign_sends.map((s: { id: string }) => s.id),
      trackingEvents: doc.tracking_events.length,
      messages: doc.messages.length,
    }).toEqual({ sends: [send.id], trackingEvents: 1, messages: 1 });
  });
});
