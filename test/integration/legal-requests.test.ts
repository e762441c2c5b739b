import { randomUUID } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, contacts, legalRequests } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { readChunked, seedSubjectData } from '../helpers/subject-data.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-16: a legal request is recorded with its exact scope, and its disclosure holds that
 * scope and nothing more: not other people, not other dates, not other kinds of data.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let stranger: Awaited<ReturnType<typeof signUp>>;
const db = () => app.database.db;

const IN_RANGE = new Date('2025-03-10T12:00:00Z');
const BEFORE = new Date('2025-01-15T12:00:00Z');
const AFTER = new Date('2025-05-20T12:00:00Z');
const scopeDates = { from: '2025-03-01T00:00:00Z', to: '2025-04-01T00:00:00Z' };

const base = { authority: 'Amtsgericht Berlin', legalBasis: 'Court order under § 100 StPO', reference: 'AZ 123/25' };

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app, { workspaceName: 'Legal Co' });
  stranger = await signUp(app, { workspaceName: 'Other' });
});
afterAll(async () => {
  await app.close();
});

async function disclose(id: string, token = owner.token) {
  const response = await fetch(`${app.baseUrl}/api/privacy/legal-requests/${id}/disclosure`, { headers: { authorization: `Bearer ${token}` } });
  const { text } = await readChunked(response);
  return { status: response.status, text, doc: response.status === 200 ? JSON.parse(text) : undefined, headers: response.headers };
}

describe('legal requests (P-16)', () => {
  it('P-16 a disclosure for one contact, a date range and two kinds holds exactly that: no other contact, date or kind', async () => {
    const email = `target-${randomUUID()}@contoso.test`;
    const inside = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: IN_RANGE });
    const early = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: BEFORE });
    const late = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: AFTER });
    const bystander = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email: `bystander-${randomUUID()}@contoso.test`, at: IN_RANGE });
    const elsewhere = await seedSubjectData(db(), { workspaceId: stranger.workspaceId, email, at: IN_RANGE });

    const recorded = await app.api('POST', '/api/privacy/legal-requests', {
      token: owner.token,
      json: { ...base, scope: { contactIds: [inside.contactId], ...scopeDates, kinds: ['messages', 'tracking_events'] } },
    });
    expect(recorded.status, recorded.text).toBe(201);
    expect(recorded.body.scope).toEqual(expect.objectContaining({ contactIds: [inside.contactId], kinds: ['messages', 'tracking_events'] }));

    const { status, doc, text, headers } = await disclose(recorded.body.id);
    expect(status).toBe(200);
    expect(headers.get('transfer-encoding')).toBe('chunked');
    expect(doc.request.id).toBe(recorded.body.id);
    // Exactly the kinds asked for.
    expect(Object.keys(doc).sort()).toEqual(['disclosedAt', 'format', 'messages', 'request', 'tracking_events']);
    expect(doc.messages.map((m: { id: string }) => m.id)).toEqual([inside.messageId]);
    expect(doc.tracking_events.map((e: { id: string }) => e.id).sort()).toEqual([...inside.eventIds].sort());
    // Nothing of other dates, other people, other workspaces, other kinds.
    for (const id of [
      ...early.eventIds, early.messageId, ...late.eventIds, late.messageId,
      ...bystander.eventIds, bystander.messageId, bystander.contactId,
      ...elsewhere.eventIds, elsewhere.messageId,
      inside.consentId, inside.suppressionId, inside.mailEventId,
    ]) {
      expect(text).not.toContain(id);
    }
    expect(text).not.toContain('bystander-');

    const audit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.action, 'legal.disclosed')));
    expect(audit).toEqual([
      expect.objectContaining({ actor: `user:${owner.userId}`, subjectType: 'legal_request', subjectId: recorded.body.id, detail: expect.objectContaining({ legalRequestId: recorded.body.id }) }),
    ]);
    const recordedAudit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.action, 'legal.recorded')));
    expect(recordedAudit.map((a) => a.subjectId)).toContain(recorded.body.id);
    const [row] = await db().select().from(legalRequests).where(eq(legalRequests.id, recorded.body.id));
    expect(row!.lastDisclosedAt).not.toBeNull();
  });

  it('P-16 a scope by address and mailbox covers only mail of that mailbox with that person, in range', async () => {
    const mailbox = await connectedMailbox(app, owner.token, `legal-box-${randomUUID()}@gmail.test`);
    const email = `addr-${randomUUID()}@contoso.test`;
    const viaMailbox = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: IN_RANGE, mailboxId: mailbox.id });
    const viaOther = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: IN_RANGE });
    const otherPerson = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email: `p-${randomUUID()}@contoso.test`, at: IN_RANGE, mailboxId: mailbox.id });

    const recorded = await app.api('POST', '/api/privacy/legal-requests', {
      token: owner.token,
      json: { ...base, scope: { addresses: [email.toUpperCase()], mailboxIds: [mailbox.id], ...scopeDates, kinds: ['messages', 'mail_events', 'campaign_sends', 'contacts', 'consents', 'suppressions'] } },
    });
    expect(recorded.status, recorded.text).toBe(201);
    const { doc, text } = await disclose(recorded.body.id);
    expect(doc.messages.map((m: { id: string }) => m.id)).toEqual([viaMailbox.messageId]);
    expect(doc.mail_events.map((m: { id: string }) => m.id)).toEqual([viaMailbox.mailEventId]);
    expect(doc.campaign_sends.map((s: { id: string }) => s.id)).toEqual([viaMailbox.sendId]);
    expect(doc.contacts.map((c: { id: string }) => c.id)).toEqual([viaMailbox.contactId]);
    expect(doc.consents.map((c: { id: string }) => c.id).sort()).toEqual([viaMailbox.consentId, viaOther.consentId].sort());
    expect(doc.suppressions.map((c: { id: string }) => c.id).sort()).toEqual([viaMailbox.suppressionId, viaOther.suppressionId].sort());
    for (const id of [viaOther.messageId, viaOther.sendId, otherPerson.messageId, otherPerson.sendId, otherPerson.contactId]) expect(text).not.toContain(id);
  });

  it('P-16 a scope about people whose addresses were erased since (purged) discloses nothing about anyone: never the whole mailbox', async () => {
    const mailbox = await connectedMailbox(app, owner.token, `legal-erased-${randomUUID()}@gmail.test`);
    const email = `gone-${randomUUID()}@contoso.test`;
    const otherPerson = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email: `p-${randomUUID()}@contoso.test`, at: IN_RANGE, mailboxId: mailbox.id });
    const kinds = ['messages', 'mail_events', 'campaign_sends', 'tracking_events'];
    const byAddress = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json: { ...base, scope: { addresses: [email], mailboxIds: [mailbox.id], ...scopeDates, kinds } } });
    const [named] = await db().insert(contacts).values({ workspaceId: owner.workspaceId, email: `gone-too-${randomUUID()}@contoso.test` }).returning({ id: contacts.id });
    const byContact = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json: { ...base, scope: { contactIds: [named!.id], mailboxIds: [mailbox.id], ...scopeDates, kinds } } });
    expect([byAddress.status, byContact.status]).toEqual([201, 201]);
    // What a purge of those people leaves: the contact row gone, and (purge-references.ts) the address out of the scope, its keyed hash in.
    await db().update(legalRequests).set({ addresses: [], erasedAddressHashes: ['keyed-hash'] }).where(eq(legalRequests.id, byAddress.body.id));
    await db().delete(contacts).where(eq(contacts.id, named!.id));
    for (const id of [byAddress.body.id, byContact.body.id]) {
      const { doc, text } = await disclose(id);
      for (const kind of kinds) expect(doc[kind], `${kind} of ${id}`).toEqual([]);
      for (const other of [otherPerson.messageId, otherPerson.sendId, otherPerson.mailEventId]) expect(text).not.toContain(other);
    }
  });

  it('P-16 bad scopes are 4xx and record nothing; members cannot record or disclose; another workspace cannot see it', async () => {
    const before = (await db().select().from(legalRequests).where(eq(legalRequests.workspaceId, owner.workspaceId))).length;
    const bad = [
      { ...base, scope: { ...scopeDates, kinds: ['messages'] } },
      { ...base, scope: { addresses: ['a@contoso.test'], ...scopeDates, kinds: [] } },
      { ...base, scope: { addresses: ['a@contoso.test'], ...scopeDates, kinds: ['gmail_content'] } },
      { ...base, scope: { addresses: ['a@contoso.test'], from: scopeDates.to, to: scopeDates.from, kinds: ['messages'] } },
      { ...base, scope: { addresses: ['not an address'], ...scopeDates, kinds: ['messages'] } },
      { ...base, legalBasis: '', scope: { addresses: ['a@contoso.test'], ...scopeDates, kinds: ['messages'] } },
      { ...base, scope: { addresses: ['a@contoso.test'], ...scopeDates, kinds: ['messages'], extra: 1 } },
    ];
    for (const json of bad) {
      const res = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    const unknownContact = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json: { ...base, scope: { contactIds: [randomUUID()], ...scopeDates, kinds: ['messages'] } } });
    expect(unknownContact.status).toBe(422);
    expect(unknownContact.body.error.code).toBe('unknown_contact');
    const unknownMailbox = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json: { ...base, scope: { mailboxIds: [randomUUID()], ...scopeDates, kinds: ['messages'] } } });
    expect(unknownMailbox.status).toBe(422);
    expect(unknownMailbox.body.error.code).toBe('unknown_mailbox');
    expect((await db().select().from(legalRequests).where(eq(legalRequests.workspaceId, owner.workspaceId))).length).toBe(before);

    const invited = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: `m-${randomUUID()}@example.com`, role: 'member' } });
    const member = await acceptInvitation(app, { token: invited.body.token, password: 'another-long-password' });
    const good = { ...base, scope: { addresses: ['a@contoso.test'], ...scopeDates, kinds: ['messages'] } };
    expect((await app.api('POST', '/api/privacy/legal-requests', { token: member.body.token, json: good })).status).toBe(403);
    const recorded = await app.api('POST', '/api/privacy/legal-requests', { token: owner.token, json: good });
    expect(recorded.status).toBe(201);
    expect((await disclose(recorded.body.id, member.body.token)).status).toBe(403);
    expect((await app.api('GET', `/api/privacy/legal-requests/${recorded.body.id}`, { token: stranger.token })).status).toBe(404);
    expect((await disclose(recorded.body.id, stranger.token)).status).toBe(404);
    expect((await app.api('GET', '/api/privacy/legal-requests', { token: owner.token })).body.legalRequests.map((r: { id: string }) => r.id)).toContain(recorded.body.id);
    expect((await app.api('GET', '/api/privacy/legal-requests/not-a-uuid', { token: owner.token })).status).toBe(404);
  });
});
