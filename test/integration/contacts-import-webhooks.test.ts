import { and, eq, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consents, contacts, webhookEvents } from '../../src/db/schema.js';
import { webhookEventCatalogue } from '../../src/webhooks/events.js';
import { verifySignatureHeader } from '../../src/webhooks/signature.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * A consent recorded by a CSV import is a `consent.changed` event like one recorded through
 * POST /api/contacts/:id/consents: written in the statement that appends the records, delivered
 * signed, with the same payload. A refused file or a failed row writes none.
 */

const ctx = useAppWithOwner({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_RETRY_BASE_SECONDS: '0.02' } });
let receiver: WebhookReceiver;
let secret: string;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const created = await ctx.app.api('POST', '/api/webhooks', { token: ctx.owner.token, json: { url: receiver.url, eventTypes: ['consent.changed'] } });
  expect(created.status).toBe(201);
  secret = created.body.secret;
});
afterAll(async () => {
  await receiver?.close();
});

const importCsv = (csv: string) => ctx.app.api('POST', '/api/contacts/import', { token: ctx.owner.token, body: csv, headers: { 'content-type': 'text/csv' } });
const db = () => ctx.app.database.db;
const outbox = () => db().select().from(webhookEvents).where(and(eq(webhookEvents.workspaceId, ctx.owner.workspaceId), eq(webhookEvents.type, 'consent.changed')));
const FIRST_FILE = [
  'email,consent,consent_source,consent_at',
  'ada@import.test,opted_in,webinar signup,2026-03-01T09:30:00Z',
  'bob@import.test,OPTED_OUT,,',
  'cy@import.test,,,',
  'dee@import.test,maybe,,',
].join('\n');
async function deliverAll() {
  for (let i = 0; i < 20; i += 1) if ((await ctx.app.services.webhookDelivery.tick()) === 0) return;
}
async function contactId(email: string) {
  const [row] = await db().select({ id: contacts.id }).from(contacts).where(and(eq(contacts.workspaceId, ctx.owner.workspaceId), eq(contacts.email, email), isNull(contacts.deletedAt)));
  return row?.id;
}

describe('CSV import consents as webhook events', () => {
  it('each appended consent is one consent.changed event, delivered signed with the payload the API route gives', async () => {
    const res = await importCsv(FIRST_FILE);
    expect(res.body).toMatchObject({ rows: 4, created: 3, consents: 2, failed: 1 });
    const ada = await contactId('ada@import.test');
    const bob = await contactId('bob@import.test');
    const expected = [
      { contactId: ada, email: 'ada@import.test', status: 'opted_in', source: 'webinar signup' },
      { contactId: bob, email: 'bob@import.test', status: 'opted_out', source: 'csv import' },
    ];
    const byEmail = (a: Record<string, unknown>, b: Record<string, unknown>) => String(a.email).localeCompare(String(b.email));
    expect((await outbox()).map((e) => e.data).sort(byEmail)).toEqual(expected);

    await deliverAll();
    const delivered = receiver.delivered().filter((d) => d.type === 'consent.changed');
    expect(delivered.map((d) => d.data).sort(byEmail)).toEqual(expected);
    for (const request of receiver.received) {
      expect(verifySignatureHeader(String(request.headers['inboxtrail-signature']), secret, request.body)).toBe(true);
      webhookEventCatalogue['consent.changed'].payload.parse(JSON.parse(request.body));
    }

    // The API route's event for the same kind of fact carries exactly these keys.
    await ctx.app.api('POST', `/api/contacts/${ada}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'crm form' } });
    const fromApi = (await outbox()).find((e) => e.data.source === 'crm form')!;
    expect(Object.keys(fromApi.data).sort()).toEqual(Object.keys(expected[0]!).sort());
  });

  it('the same file again, or a record dated before the latest (history only), writes no event', async () => {
    const before = (await outbox()).length;
    expect((await importCsv(FIRST_FILE)).body).toMatchObject({ consents: 0 });
    const backdated = await importCsv('email,consent,consent_source,consent_at\nbob@import.test,opted_in,old paper form,2020-01-01\n');
    expect(backdated.body).toMatchObject({ consents: 1, failed: 0 });
    const bob = await contactId('bob@import.test');
    const shown = await ctx.app.api('GET', `/api/contacts/${bob}`, { token: ctx.owner.token });
    expect(shown.body.consent).toMatchObject({ status: 'opted_out' });
    expect((await outbox()).length).toBe(before);
  });

  it('a refused file or a failed row writes no consent and no event', async () => {
    const before = (await outbox()).length;
    const refused = await importCsv('email,consent\nzed@import.test,opted_in\n"unterminated,opted_in\n');
    expect(refused.status).toBe(400);
    const failedRows = await importCsv('email,consent,consent_at\nyan@import.test,opted_in,next tuesday\nxia@import.test,yes,\n');
    expect(failedRows.body).toMatchObject({ consents: 0, failed: 2 });
    expect(await contactId('zed@import.test')).toBeUndefined();
    expect((await outbox()).length).toBe(before);
  });

  it('a deleted contact with the same address gets neither the record nor an event: the live one does', async () => {
    const old = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'again@import.test' } });
    expect((await ctx.app.api('DELETE', `/api/contacts/${old.body.id}`, { token: ctx.owner.token })).status).toBe(204);
    const res = await importCsv('email,consent\nagain@import.test,opted_in\n');
    expect(res.body).toMatchObject({ created: 1, consents: 1 });
    expect(await db().select().from(consents).where(eq(consents.contactId, old.body.id))).toEqual([]);
    const events = (await outbox()).filter((e) => e.data.email === 'again@import.test');
    expect(events.map((e) => e.data.contactId)).toEqual([await contactId('again@import.test')]);
  });
});
