import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, consents, suppressions } from '../../src/db/schema.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/* The workspace's suppression list behind /api (P-08; invariants 7, 9; POLICY "Evidence"). */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let memberToken: string;
let adminToken: string;
let otherOwner: Awaited<ReturnType<typeof signUp>>;
const db = () => app.database.db;
/** The audit log names addresses by their keyed hash only (it outlives a contact's purge, P-13). */
const hashOf = (email: string) => createAddressHasher(app.config.privacy.suppressionHashKey)(email);

async function join(role: 'member' | 'admin', email: string) {
  const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  expect(invite.status).toBe(201);
  const accepted = await acceptInvitation(app, { token: invite.body.token, password: `${role} password long` });
  expect(accepted.status).toBe(201);
  return accepted.body.token as string;
}

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
  otherOwner = await signUp(app);
  memberToken = await join('member', 'member@acme.test');
  adminToken = await join('admin', 'admin@acme.test');
});
afterAll(async () => {
  await app.close();
});

const add = (json: unknown, token = owner.token) => app.api('POST', '/api/suppressions', { token, json });
const remove = (id: string, json: unknown, token = owner.token) => app.api('DELETE', `/api/suppressions/${id}`, { token, json });
const auditFor = (subjectId: string) => db().select().from(auditLog).where(eq(auditLog.subjectId, subjectId)).orderBy(auditLog.at);

describe('/api/suppressions', () => {
  it('any member adds an entry (201); adding it again, in any case, returns the same entry (200)', async () => {
    const created = await add({ email: 'Someone@Example.test', note: 'asked on the phone' }, memberToken);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: 'Someone@example.test', scope: 'all', reason: 'manual', source: 'api' });
    expect(created.body.id).toMatch(/^[0-9a-f-]{36}$/);

    const again = await add({ email: 'someone@EXAMPLE.test', reason: 'complaint' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(created.body);

    expect(await auditFor(created.body.id)).toMatchObject([
      { action: 'suppression.added', actor: expect.stringMatching(/^user:/), requestId: created.headers.get('x-request-id'), detail: { addressHash: hashOf('Someone@example.test'), scope: 'all', reason: 'manual', note: 'asked on the phone' } },
    ]);
  });

  it('a topic scope is its own entry beside the workspace-wide one, named as campaign topics are (case-insensitively)', async () => {
    const topic = await add({ email: 'someone@example.test', scope: 'topic:Newsletter', reason: 'complaint' });
    expect(topic.status).toBe(201);
    // Campaign topics are lowercase: stored as typed, `topic:Newsletter` could never match one.
    expect(topic.body).toMatchObject({ scope: 'topic:newsletter', reason: 'complaint' });
  });

  it('lists newest first, filters by email and reason, and pages with a cursor', async () => {
    for (const email of ['page1@example.test', 'page2@example.test', 'page3@example.test']) expect((await add({ email })).status).toBe(201);
    const first = await app.api('GET', '/api/suppressions?limit=2', { token: memberToken });
    expect(first.status).toBe(200);
    expect(first.body.suppressions.map((s: { email: string }) => s.email)).toEqual(['page3@example.test', 'page2@example.test']);
    const second = await app.api('GET', `/api/suppressions?limit=2&cursor=${first.body.nextCursor}`, { token: memberToken });
    expect(second.body.suppressions[0].email).toBe('page1@example.test');

    const byEmail = await app.api('GET', '/api/suppressions?email=SOMEONE@example.test', { token: owner.token });
    expect(byEmail.body.suppressions.map((s: { scope: string }) => s.scope).sort()).toEqual(['all', 'topic:newsletter']);
    const complaints = await app.api('GET', '/api/suppressions?reason=complaint', { token: owner.token });
    expect(complaints.body.suppressions).toMatchObject([{ email: 'someone@example.test', scope: 'topic:newsletter' }]);
    const none = await app.api('GET', '/api/suppressions?reason=bounce', { token: owner.token });
    expect(none.body).toEqual({ suppressions: [], nextCursor: null });
  });

  it('bad input → 400 validation_failed naming the field, and nothing changes', async () => {
    const before = await snapshotCounts(db());
    const cases: [unknown, string][] = [
      [{}, 'email'],
      [{ email: 'not an address' }, 'email'],
      [{ email: 'a@example.test\r\nBcc: x@example.test' }, 'email'],
      [{ email: 'a@example.test', reason: 'unsubscribe' }, 'reason'],
      [{ email: 'a@example.test', reason: 'bounce' }, 'reason'],
      [{ email: 'a@example.test', scope: 'everything' }, 'scope'],
      [{ email: 'a@example.test', scope: 'topic:' }, 'scope'],
      [{ email: 'a@example.test', scope: 'topic: padded ' }, 'scope'],
      [{ email: 'a@example.test', scope: 'topic:two words' }, 'scope'],
      [{ email: 'a@example.test', note: '' }, 'note'],
      [{ email: 'a@example.test', createdBy: 'me' }, 'createdBy'],
    ];
    for (const [json, field] of cases) {
      const res = await add(json);
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    }
    for (const query of ['limit=0', 'limit=x', 'reason=sometimes', 'cursor=bogus', 'email=nope']) {
      const res = await app.api('GET', `/api/suppressions?${query}`, { token: owner.token });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('removal: members get 403; admins must give a note; the removal is audited with the note and the entry', async () => {
    const entry = (await add({ email: 'remove.me@example.test' })).body;
    const before = await snapshotCounts(db());
    const byMember = await remove(entry.id, { note: 'please' }, memberToken);
    expect(byMember.status).toBe(403);
    expect(byMember.body.error.code).toBe('forbidden');
    const noNote = await remove(entry.id, {}, adminToken);
    expect(noNote.status).toBe(400);
    expect(noNote.body.error.details.map((d: { field: string }) => d.field)).toEqual(['note']);
    expect((await remove(entry.id, { note: '   ' }, adminToken)).status).toBe(400);
    expect(await snapshotCounts(db())).toEqual(before);

    const removed = await remove(entry.id, { note: 'added by mistake, wrong address' }, adminToken);
    expect(removed.status).toBe(204);
    const list = await app.api('GET', '/api/suppressions?email=remove.me@example.test', { token: owner.token });
    expect(list.body.suppressions).toEqual([]);
    const audit = await auditFor(entry.id);
    expect(audit.map((a) => a.action)).toEqual(['suppression.added', 'suppression.removed']);
    expect(audit[1]).toMatchObject({
      actor: expect.stringMatching(/^user:/),
      detail: { note: 'added by mistake, wrong address', entry: { addressHash: hashOf('remove.me@example.test'), scope: 'all', reason: 'manual', source: 'api' } },
    });
    expect((await remove(entry.id, { note: 'again' })).status).toBe(404);
  });

  it('removing a recipient\'s own opt-out needs new consent evidence, which joins the contact\'s consent history', async () => {
    const contact = (await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'came.back@example.test' } })).body;
    const [row] = await db()
      .insert(suppressions)
      .values({ workspaceId: owner.workspaceId, email: 'came.back@example.test', reason: 'unsubscribe', source: 'unsubscribe-link' })
      .returning();
    const before = await snapshotCounts(db());
    const withoutEvidence = await remove(row!.id, { note: 'they called us' });
    expect(withoutEvidence.status).toBe(400);
    expect(withoutEvidence.body.error.details.map((d: { field: string }) => d.field)).toEqual(['consentSource']);
    expect(await snapshotCounts(db())).toEqual(before);

    const res = await remove(row!.id, { note: 'they called us', consentSource: 'signed form 2026-11-20' });
    expect(res.status).toBe(204);
    const history = await db().select().from(consents).where(eq(consents.contactId, contact.id));
    expect(history).toMatchObject([{ status: 'opted_in', source: 'signed form 2026-11-20', actor: `user:${owner.userId}` }]);
    expect((await auditFor(row!.id))[0]).toMatchObject({ action: 'suppression.removed', detail: { consentSource: 'signed form 2026-11-20' } });
  });

  it('removals of one entry at once: one 204, the others 404, one audit row and one consent record (a server ran them all)', async () => {
    const contact = (await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'removed.twice@example.test' } })).body;
    const [row] = await db()
      .insert(suppressions)
      .values({ workspaceId: owner.workspaceId, email: 'removed.twice@example.test', reason: 'complaint', source: 'api' })
      .returning();
    const answers = await Promise.all(Array.from({ length: 12 }, () => remove(row!.id, { note: 'n', consentSource: 'form' })));
    expect(answers.map((a) => a.status).sort()).toEqual([204, ...Array<number>(11).fill(404)]);
    expect((await auditFor(row!.id)).filter((a) => a.action === 'suppression.removed')).toHaveLength(1);
    expect(await db().select().from(consents).where(eq(consents.contactId, contact.id))).toHaveLength(1);
  });

  it('invariant 7: another workspace\'s entry is a 404 and stays; its list shows none of ours', async () => {
    const theirs = (await add({ email: 'theirs@example.test' }, otherOwner.token)).body;
    const before = await snapshotCounts(db());
    for (const id of [theirs.id, '00000000-0000-4000-8000-000000000000', 'not-an-id']) {
      const res = await remove(id, { note: 'x' });
      expect(res.status, id).toBe(404);
    }
    expect(await snapshotCounts(db())).toEqual(before);
    const ours = await app.api('GET', '/api/suppressions?limit=500', { token: owner.token });
    expect(ours.text).not.toContain('theirs@example.test');
    const theirList = await app.api('GET', '/api/suppressions', { token: otherOwner.token });
    expect(theirList.body.suppressions).toMatchObject([{ id: theirs.id }]);
    // Adding the same address in our workspace is our own entry, not theirs.
    const mine = await add({ email: 'theirs@example.test' });
    expect(mine.status).toBe(201);
    expect(mine.body.id).not.toBe(theirs.id);
  });

  it('needs a token', async () => {
    expect((await app.api('GET', '/api/suppressions')).status).toBe(401);
    expect((await app.api('POST', '/api/suppressions', { json: { email: 'x@example.test' } })).status).toBe(401);
    expect((await app.api('DELETE', '/api/suppressions/00000000-0000-4000-8000-000000000000', { json: { note: 'x' } })).status).toBe(401);
  });

  it('P-08 a manual entry stops 1:1 mail at once; a topic entry does not (1:1 mail has no topic); removing it lets mail through again', async () => {
    const mailbox = await connectedMailbox(app, owner.token, 'sender@acme.test');
    app.sandbox.control.createMailbox({ email: 'blocked@example.test' });
    const send = () => app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: mailbox.id, to: 'blocked@example.test', subject: 'Hi', text: 'x' } });

    expect((await add({ email: 'blocked@example.test', scope: 'topic:Newsletter' })).status).toBe(201);
    expect((await send()).status).toBe(201);

    const entry = (await add({ email: 'Blocked@example.test' })).body;
    const refused = await send();
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'recipient_suppressed' });

    expect((await remove(entry.id, { note: 'confirmed with the customer' })).status).toBe(204);
    expect((await send()).status).toBe(201);
    const rows = await db()
      .select()
      .from(suppressions)
      .where(and(eq(suppressions.workspaceId, owner.workspaceId), eq(sql`lower(${suppressions.email})`, 'blocked@example.test')));
    expect(rows.map((r) => r.scope)).toEqual(['topic:newsletter']);
  });
});
