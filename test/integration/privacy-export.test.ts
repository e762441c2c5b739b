import { randomUUID } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, contacts, mailboxes, messages, users } from '../../src/db/schema.js';
import { EXPORT_PAGE_SIZE } from '../../src/privacy/export.repo.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { readChunked, seedSubjectData } from '../helpers/subject-data.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-12: a user views, exports and corrects their own data; an admin exports everything the
 * workspace holds about one recipient address (a data subject request). Exports are one
 * JSON document streamed over a real socket.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let stranger: Awaited<ReturnType<typeof signUp>>;
let member: { token: string; userId: string };
const db = () => app.database.db;

async function invite(role: 'member' | 'admin') {
  const email = `${role}-${randomUUID()}@example.com`;
  const invited = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  expect(invited.status, invited.text).toBe(201);
  const accepted = await acceptInvitation(app, { token: invited.body.token, password: 'another-long-password' });
  expect(accepted.status, accepted.text).toBe(201);
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string };
}

const auditOf = (workspaceId: string, action: string) =>
  db().select().from(auditLog).where(and(eq(auditLog.workspaceId, workspaceId), eq(auditLog.action, action)));

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app, { workspaceName: 'Export Co' });
  stranger = await signUp(app, { workspaceName: 'Elsewhere' });
  member = await invite('member');
});
afterAll(async () => {
  await app.close();
});

describe('the caller exports their own data (P-12)', () => {
  it('P-12 GET /api/privacy/export streams everything held about the caller as one JSON document, never a hash or token', async () => {
    const mailbox = await connectedMailbox(app, owner.token, `owner-box-${randomUUID()}@gmail.test`);
    const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: `c-${randomUUID()}@contoso.test` } });
    const campaign = await app.api('POST', '/api/campaigns', {
      token: owner.token,
      json: { name: 'Spring', kind: 'marketing', mailboxId: mailbox.id, subject: 'Spring news', html: '<p>Hi</p>', contactIds: [contact.body.id] },
    });
    expect(campaign.status, campaign.text).toBe(201);
    await app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: owner.token, json: { status: 'opted_in', source: 'trade fair' } });
    const suppression = await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: `s-${randomUUID()}@contoso.test` } });
    expect(suppression.status, suppression.text).toBe(201);
    // A consent their import recorded is theirs too (actor `import:<user>`, read as its own part).
    const importedEmail = `i-${randomUUID()}@contoso.test`;
    const imported = await app.api('POST', '/api/contacts/import', { token: owner.token, body: `email,consent\n${importedEmail},opted_in\n`, headers: { 'content-type': 'text/csv' } });
    expect(imported.status, imported.text).toBeLessThan(300);

    // Many rows: several pages of sent-mail metadata, so the document cannot be one query's worth.
    const many = EXPORT_PAGE_SIZE * 4 + 17;
    await db()
      .insert(messages)
      .values(
        Array.from({ length: many }, (_, i) => ({
          workspaceId: owner.workspaceId,
          mailboxId: mailbox.id,
          direction: 'outbound' as const,
          status: 'sent' as const,
          fromAddress: mailbox.email,
          toAddresses: [`r${i}@contoso.test`],
          subject: `Note ${i}`,
          sentBy: owner.userId,
        })),
      );
    // Someone else's mail in the same workspace, and the caller's stranger elsewhere: not theirs.
    await seedSubjectData(db(), { workspaceId: owner.workspaceId, email: `not-mine-${randomUUID()}@contoso.test`, at: new Date(), sentBy: member.userId });
    await seedSubjectData(db(), { workspaceId: stranger.workspaceId, email: `far-${randomUUID()}@contoso.test`, at: new Date(), sentBy: stranger.userId });

    const response = await fetch(`${app.baseUrl}/api/privacy/export`, { headers: { authorization: `Bearer ${owner.token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('cache-control')).toBe('no-store');
    // Streamed: no length known up front, written in many pieces as it was read.
    expect(response.headers.get('content-length')).toBeNull();
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    const { chunks, text } = await readChunked(response);
    expect(chunks).toBeGreaterThan(4);
    const doc = JSON.parse(text);

    expect(doc.user).toEqual({ id: owner.userId, email: owner.email, name: null, createdAt: expect.any(String) });
    expect(doc.memberships).toEqual([expect.objectContaining({ workspaceId: owner.workspaceId, role: 'owner', workspaceName: 'Export Co' })]);
    expect(doc.mailboxes).toEqual([expect.objectContaining({ id: mailbox.id, email: mailbox.email, scopes: mailbox.scopes, disclosureVersion: expect.any(String) })]);
    expect(doc.messagesSent).toHaveLength(many);
    expect(new Set(doc.messagesSent.map((m: { id: string }) => m.id)).size).toBe(many);
    expect(doc.campaignsCreated.map((c: { id: string }) => c.id)).toEqual([campaign.body.id]);
    const [importedContact] = await db().select({ id: contacts.id }).from(contacts).where(eq(contacts.email, importedEmail));
    expect(doc.consentsRecorded).toEqual([
      expect.objectContaining({ contactId: contact.body.id, status: 'opted_in', source: 'trade fair' }),
      expect.objectContaining({ contactId: importedContact!.id, status: 'opted_in' }),
    ]);
    expect(doc.suppressionsRecorded).toEqual([expect.objectContaining({ id: suppression.body.suppression?.id ?? suppression.body.id })]);
    expect(doc.auditLog.length).toBeGreaterThan(0);
    expect(doc.auditLog.every((row: { workspaceId: string }) => row.workspaceId === owner.workspaceId)).toBe(true);

    // Never a password hash, never a token (not even encrypted).
    const [userRow] = await db().select().from(users).where(eq(users.id, owner.userId));
    const [mailboxRow] = await db().select().from(mailboxes).where(eq(mailboxes.id, mailbox.id));
    expect(text).not.toContain(userRow!.passwordHash);
    expect(text).not.toContain('scrypt$');
    expect(text).not.toContain(mailboxRow!.refreshTokenEnc);
    expect(text).not.toMatch(/passwordHash|refreshToken|accessToken/);
    // Nobody else's data.
    expect(text).not.toContain('not-mine-');
    expect(text).not.toContain('far-');

    const audit = await auditOf(owner.workspaceId, 'privacy.exported');
    expect(audit).toEqual(expect.arrayContaining([expect.objectContaining({ actor: `user:${owner.userId}`, subjectType: 'user', subjectId: owner.userId })]));
  });

  it('P-12 an export without a session is refused', async () => {
    const res = await app.api('GET', '/api/privacy/export');
    expect(res.status).toBe(401);
  });
});

describe('data subject export for one recipient address (P-12)', () => {
  it('P-12 an admin exports contact, consents, ledger rows, messages, tracking events with verdicts and suppressions of one address, and nothing of anyone else', async () => {
    const email = `Subject-${randomUUID()}@Contoso.test`;
    const seeded = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: new Date('2025-05-01T10:00:00Z') });
    const again = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at: new Date('2025-06-01T10:00:00Z') });
    const other = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email: `bystander-${randomUUID()}@contoso.test`, at: new Date('2025-05-01T10:00:00Z') });
    const elsewhere = await seedSubjectData(db(), { workspaceId: stranger.workspaceId, email, at: new Date('2025-05-01T10:00:00Z') });

    const response = await fetch(`${app.baseUrl}/api/privacy/recipients/export?email=${encodeURIComponent(email.toLowerCase())}`, {
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    const { text } = await readChunked(response);
    const doc = JSON.parse(text);
    const ids = (rows: { id: string }[]) => rows.map((r) => r.id).sort();

    expect(ids(doc.contacts)).toEqual([seeded.contactId]);
    expect(ids(doc.consents)).toEqual([seeded.consentId, again.consentId].sort());
    expect(ids(doc.campaign_sends)).toEqual([seeded.sendId, again.sendId].sort());
    expect(ids(doc.messages)).toEqual([seeded.messageId, again.messageId].sort());
    expect(ids(doc.mail_events)).toEqual([seeded.mailEventId, again.mailEventId].sort());
    expect(ids(doc.tracking_events)).toEqual([...seeded.eventIds, ...again.eventIds].sort());
    expect(doc.tracking_events[0]).toEqual(expect.objectContaining({ classification: 'human', reasons: [], ip: '203.0.113.7' }));
    expect(ids(doc.suppressions)).toEqual([seeded.suppressionId, again.suppressionId].sort());
    for (const id of [other.contactId, other.sendId, other.messageId, elsewhere.contactId, elsewhere.sendId, elsewhere.messageId]) expect(text).not.toContain(id);
    expect(text).not.toContain('bystander-');

    const audit = await auditOf(owner.workspaceId, 'privacy.exported');
    const row = audit.find((a) => a.subjectType === 'recipient');
    expect(row).toEqual(expect.objectContaining({ actor: `user:${owner.userId}`, subjectId: seeded.contactId }));
    // The append-only log names the contact, never the address (a later deletion must leave nothing of it); nor does the request log.
    expect(JSON.stringify(row)).not.toContain(email.toLowerCase());
    expect(app.logs.join('\n').toLowerCase()).not.toContain(email.toLowerCase());
  });

  it("P-03 P-12 the export shows a message's subject only where the admin sent it or owns its mailbox; the rest are listed without", async () => {
    const email = `mixed-${randomUUID()}@contoso.test`;
    const at = new Date('2025-07-01T10:00:00Z');
    const membersMailbox = await connectedMailbox(app, member.token, `member-box-${randomUUID()}@acme.test`);
    const theirs = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at, mailboxId: membersMailbox.id, sentBy: member.userId });
    const mine = await seedSubjectData(db(), { workspaceId: owner.workspaceId, email, at, sentBy: owner.userId });
    const subjectOf = async (id: string) => (await db().select({ subject: messages.subject }).from(messages).where(eq(messages.id, id)))[0]!.subject!;

    const response = await fetch(`${app.baseUrl}/api/privacy/recipients/export?email=${encodeURIComponent(email)}`, { headers: { authorization: `Bearer ${owner.token}` } });
    expect(response.status).toBe(200);
    const { text } = await readChunked(response);
    const byId = new Map((JSON.parse(text).messages as { id: string; subject: string | null }[]).map((m) => [m.id, m]));
    expect(byId.get(theirs.messageId)).toMatchObject({ subject: null });
    expect(text).not.toContain(await subjectOf(theirs.messageId));
    expect(byId.get(mine.messageId)).toMatchObject({ subject: await subjectOf(mine.messageId) });
  });

  it('P-12 a member cannot export a recipient, and a bad address is a 400 that records nothing', async () => {
    const before = (await auditOf(owner.workspaceId, 'privacy.exported')).length;
    const asMember = await app.api('GET', `/api/privacy/recipients/export?email=x@contoso.test`, { token: member.token });
    expect(asMember.status).toBe(403);
    const bad = await app.api('GET', `/api/privacy/recipients/export?email=not-an-address`, { token: owner.token });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('validation_failed');
    const missing = await app.api('GET', `/api/privacy/recipients/export`, { token: owner.token });
    expect(missing.status).toBe(400);
    expect((await auditOf(owner.workspaceId, 'privacy.exported')).length).toBe(before);
  });
});

describe('correction: PATCH /api/me (P-12)', () => {
  it('P-12 the user corrects their name; the change is audited by field name only', async () => {
    const res = await app.api('PATCH', '/api/me', { token: member.token, json: { name: 'Grace Hopper' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.user.name).toBe('Grace Hopper');
    expect((await app.api('GET', '/api/me', { token: member.token })).body.user.name).toBe('Grace Hopper');
    const audit = await auditOf(owner.workspaceId, 'account.corrected');
    expect(audit).toEqual([expect.objectContaining({ actor: `user:${member.userId}`, subjectId: member.userId, detail: { fields: ['name'] } })]);
    expect(JSON.stringify(audit)).not.toContain('Grace');
  });

  it('P-12 a password change needs the current password; a wrong one changes nothing', async () => {
    const person = await signUp(app, { password: 'first-long-password' });
    const wrong = await app.api('PATCH', '/api/me', { token: person.token, json: { currentPassword: 'not-the-password', newPassword: 'second-long-password' } });
    expect([wrong.status, wrong.body.error.code]).toEqual([403, 'password_incorrect']);
    expect((await app.api('POST', '/api/auth/login', { json: { email: person.email, password: 'first-long-password' } })).status).toBe(200);

    const noCurrent = await app.api('PATCH', '/api/me', { token: person.token, json: { newPassword: 'second-long-password' } });
    expect(noCurrent.status).toBe(400);

    const ok = await app.api('PATCH', '/api/me', { token: person.token, json: { currentPassword: 'first-long-password', newPassword: 'second-long-password' } });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.text).not.toContain('second-long-password');
    expect((await app.api('POST', '/api/auth/login', { json: { email: person.email, password: 'second-long-password' } })).status).toBe(200);
    expect((await app.api('POST', '/api/auth/login', { json: { email: person.email, password: 'first-long-password' } })).status).toBe(401);
    expect(app.logs.join('\n')).not.toContain('second-long-password');
  });

  it('P-12 bad input to PATCH /api/me is a 400 and changes nothing', async () => {
    const before = (await app.api('GET', '/api/me', { token: owner.token })).body.user;
    for (const json of [{}, { name: '' }, { name: 'x'.repeat(201) }, { role: 'owner' }, { newPassword: 'short', currentPassword: 'x' }, { email: 'not-an-address', currentPassword: 'x' }, { email: 'new@example.com' }]) {
      const res = await app.api('PATCH', '/api/me', { token: owner.token, json });
      expect(res.status, JSON.stringify(json)).toBe(400);
    }
    expect((await app.api('GET', '/api/me', { token: owner.token })).body.user).toEqual(before);
  });

  it('P-12 a new login address is changed only once a code mailed to it is used by the same user; the old address is told', async () => {
    const person = await signUp(app, { password: 'first-long-password' });
    const outbox = app.services.accountMailer.outbox!;
    const newEmail = `moved-${randomUUID()}@example.com`;
    const codeFor = (to: string) => {
      const mail = [...outbox].reverse().find((m) => m.to === to && m.subject.startsWith('Confirm your new'));
      return mail && /code is:\n\n(\S+)/.exec(mail.text)?.[1];
    };

    const wrong = await app.api('PATCH', '/api/me', { token: person.token, json: { email: newEmail, currentPassword: 'not-the-password' } });
    expect([wrong.status, wrong.body.error.code]).toEqual([403, 'password_incorrect']);
    expect(codeFor(newEmail)).toBeUndefined();

    const asked = await app.api('PATCH', '/api/me', { token: person.token, json: { email: newEmail.toUpperCase(), currentPassword: 'first-long-password' } });
    expect(asked.status, asked.text).toBe(200);
    expect(asked.body.email.status).toBe('verification_sent');
    expect(asked.body.user.email).toBe(person.email);
    expect((await app.api('GET', '/api/me', { token: person.token })).body.user.email).toBe(person.email);
    const code = codeFor(newEmail)!;
    expect(code).toBeDefined();
    expect(app.logs.join('\n')).not.toContain(code);

    // Someone else, or a forged code, cannot use it.
    const stolen = await app.api('POST', '/api/me/email/verify', { token: owner.token, json: { code } });
    expect(stolen.status).toBe(404);
    expect(stolen.body.error.code).toBe('email_code_invalid');
    expect((await app.api('POST', '/api/me/email/verify', { token: person.token, json: { code: `${code}x` } })).status).toBe(404);
    expect((await app.api('POST', '/api/me/email/verify', { token: person.token, json: {} })).status).toBe(400);

    const confirmed = await app.api('POST', '/api/me/email/verify', { token: person.token, json: { code } });
    expect(confirmed.status, confirmed.text).toBe(200);
    expect(confirmed.body.user.email).toBe(newEmail);
    expect((await app.api('POST', '/api/auth/login', { json: { email: newEmail, password: 'first-long-password' } })).status).toBe(200);
    expect((await app.api('POST', '/api/auth/login', { json: { email: person.email, password: 'first-long-password' } })).status).toBe(401);
    expect(outbox.some((m) => m.to === person.email && m.subject === 'Your inboxtrail login address was changed')).toBe(true);
    const audit = await db().select().from(auditLog).where(and(eq(auditLog.subjectId, person.userId), eq(auditLog.action, 'account.corrected')));
    expect(audit.map((a) => a.detail)).toEqual([{ fields: ['email'] }]);
    expect(JSON.stringify(audit)).not.toContain(newEmail);

    // The code works once: the account no longer has the address it was issued for.
    expect((await app.api('POST', '/api/me/email/verify', { token: person.token, json: { code } })).status).toBe(404);
  });

  it('P-12 asking for an address that another account has says nothing about it: that address gets a note, no code, nothing changes', async () => {
    const person = await signUp(app, { password: 'first-long-password' });
    const taken = await app.api('PATCH', '/api/me', { token: person.token, json: { email: owner.email, currentPassword: 'first-long-password' } });
    expect(taken.status).toBe(200);
    expect(taken.body.email.status).toBe('verification_sent');
    const toOwner = app.services.accountMailer.outbox!.filter((m) => m.to === owner.email);
    expect(toOwner.at(-1)!.subject).toBe('Someone asked to use your address for another inboxtrail account');
    expect(toOwner.at(-1)!.text).not.toMatch(/code is/);
    expect((await app.api('GET', '/api/me', { token: person.token })).body.user.email).toBe(person.email);
  });

  it('asking for a new login address mails that address at most 5 times an hour, with or without an account, answering the same; one person asks at most 10 times an hour', async () => {
    const mailsTo = (to: string) => app.services.accountMailer.outbox!.filter((m) => m.to === to);
    const ask = (person: { token: string; password: string }, email: string) =>
      app.api('PATCH', '/api/me', { token: person.token, json: { email, currentPassword: person.password } });
    const stranger = `stranger-${randomUUID()}@example.org`;
    // An address with an account: its own signup code was one of its 5 mails this hour.
    const account = await signUp(app);
    for (const [i, target] of [stranger, account.email].entries()) {
      const asker = await signUp(app, { password: `asker password ${i}` });
      for (let n = 0; n < 8; n += 1) {
        const asked = await ask(asker, target);
        expect([asked.status, asked.body.email?.status], asked.text).toEqual([200, 'verification_sent']);
      }
    }
    expect(mailsTo(stranger).map((m) => m.subject)).toEqual(Array(5).fill('Confirm your new inboxtrail login address'));
    expect(mailsTo(account.email).filter((m) => m.subject.startsWith('Someone asked'))).toHaveLength(4);
    expect(mailsTo(account.email)).toHaveLength(5);

    // Many addresses, one person: ten requests an hour, then 429 and nothing mailed.
    const sprayer = await signUp(app, { password: 'sprayer password' });
    const targets = Array.from({ length: 11 }, (_, i) => `list-${i}-${randomUUID()}@example.org`);
    for (const target of targets.slice(0, 10)) expect((await ask(sprayer, target)).status).toBe(200);
    const refused = await ask(sprayer, targets[10]!);
    expect([refused.status, refused.body.error?.code]).toEqual([429, 'too_many_requests']);
    expect(refused.headers.get('retry-after')).toBeTruthy();
    expect(mailsTo(targets[10]!)).toHaveLength(0);
    expect(targets.slice(0, 10).every((t) => mailsTo(t).length === 1)).toBe(true);
  });
});
