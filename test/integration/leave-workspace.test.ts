import { and, eq, sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockSendingMailboxSql } from '../../src/campaigns/gate-sql.js';
import { auditLog, mailboxes, messages } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * A member leaves a workspace on their own (DELETE /api/members/me): whatever their role, except
 * its last owner. The mailboxes they connected there are disconnected (revoked at Google, our
 * copy wiped), the API keys they made there revoked, and their session no longer reaches it.
 */

let app: TestApp;
const db = () => app.database.db;

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

async function join(owner: { token: string }, role: 'member' | 'admin' | 'owner') {
  const email = `${role}-${Math.random().toString(36).slice(2)}@example.com`;
  const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  expect(invite.status, invite.text).toBe(201);
  const accepted = await acceptInvitation(app, { token: invite.body.token, password: 'member password long' });
  expect(accepted.status, accepted.text).toBe(201);
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string, email };
}

const liveMailbox = async (id: string) => (await db().select({ deletedAt: mailboxes.deletedAt, refresh: mailboxes.refreshTokenEnc }).from(mailboxes).where(eq(mailboxes.id, id)))[0];

describe('leaving a workspace', () => {
  it('its last owner cannot leave: 409 last_owner, and Google is told nothing', async () => {
    const owner = await signUp(app);
    const mailbox = await connectedMailbox(app, owner.token, `last-owner-${Date.now()}@acme.test`);
    const revokes = app.sandbox.control.callCounts().revoke;
    const refused = await app.api('DELETE', '/api/members/me', { token: owner.token });
    expect(refused.status, refused.text).toBe(409);
    expect(refused.body.error.code).toBe('last_owner');
    expect(app.sandbox.control.callCounts().revoke).toBe(revokes);
    expect((await liveMailbox(mailbox.id))?.deletedAt).toBeNull();
    expect((await app.api('GET', '/api/me', { token: owner.token })).status).toBe(200);
  });

  it('an admin leaves: their mailbox here is disconnected at Google, their keys revoked, their session ends here; the owner\'s mailbox stays', async () => {
    const owner = await signUp(app);
    const ownersMailbox = await connectedMailbox(app, owner.token, `owner-${Date.now()}@acme.test`);
    const admin = await join(owner, 'admin');
    const adminsMailbox = await connectedMailbox(app, admin.token, `admin-${Date.now()}@acme.test`);
    const key = await app.api('POST', '/api/api-keys', { token: admin.token, json: { name: 'crm', scopes: ['read'] } });
    expect(key.status, key.text).toBe(201);

    // A key acts for its member but is no person: it cannot make them leave.
    const byKey = await app.api('DELETE', '/api/members/me', { token: key.body.key });
    expect(byKey.status, byKey.text).toBe(403);

    const revokes = app.sandbox.control.callCounts().revoke;
    const left = await app.api('DELETE', '/api/members/me', { token: admin.token });
    expect(left.status, left.text).toBe(204);

    expect(app.sandbox.control.callCounts().revoke).toBe(revokes + 1);
    const gone = await liveMailbox(adminsMailbox.id);
    expect(gone?.deletedAt).not.toBeNull();
    expect(gone?.refresh).toBe('');
    expect((await liveMailbox(ownersMailbox.id))?.deletedAt).toBeNull();
    const listed = (await app.api('GET', '/api/mailboxes', { token: owner.token })).body.mailboxes.map((m: { id: string }) => m.id);
    expect(listed).toEqual([ownersMailbox.id]);

    expect((await app.api('GET', '/api/me', { token: admin.token })).status).toBe(401);
    expect((await app.api('GET', '/api/contacts', { token: key.body.key })).status).toBe(401);
    const members = (await app.api('GET', '/api/members', { token: owner.token })).body.members.map((m: { userId: string }) => m.userId);
    expect(members).not.toContain(admin.userId);

    const audit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.subjectId, admin.userId)));
    expect(audit.find((row) => row.action === 'member.removed')).toMatchObject({ actor: `user:${admin.userId}`, detail: { role: 'admin' } });
    const mailboxAudit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.subjectId, adminsMailbox.id)));
    expect(mailboxAudit.map((row) => row.action)).toContain('deletion.requested');

    // Leaving twice: the token no longer reaches the workspace.
    expect((await app.api('DELETE', '/api/members/me', { token: admin.token })).status).toBe(401);
  });

  it('the last two owners leave at once: one leaves, the other is refused and keeps their mailbox (a reviewer\'s repro)', async () => {
    const owner = await signUp(app);
    const second = await join(owner, 'owner');
    const first = await connectedMailbox(app, owner.token, `race-1-${Date.now()}@acme.test`);
    const other = await connectedMailbox(app, second.token, `race-2-${Date.now()}@acme.test`);
    const revokes = app.sandbox.control.callCounts().revoke;
    const answers = await Promise.all([owner.token, second.token].map((token) => app.api('DELETE', '/api/members/me', { token })));
    expect(answers.map((a) => a.status).sort()).toEqual([204, 409]);
    const [refusedMailbox, leftMailbox] = answers[0]!.status === 409 ? [first, other] : [other, first];
    expect((await liveMailbox(refusedMailbox.id))?.deletedAt).toBeNull();
    expect((await liveMailbox(leftMailbox.id))?.deletedAt).not.toBeNull();
    expect(app.sandbox.control.callCounts().revoke).toBe(revokes + 1);
  });

  it('an admin removing themselves by id leaves (their mailbox goes too); an API key cannot remove its own member', async () => {
    const owner = await signUp(app);
    const admin = await join(owner, 'admin');
    const mailbox = await connectedMailbox(app, admin.token, `self-${Date.now()}@acme.test`);
    const key = await app.api('POST', '/api/api-keys', { token: admin.token, json: { name: 'ops', scopes: ['admin'] } });
    expect(key.status, key.text).toBe(201);
    const byKey = await app.api('DELETE', `/api/members/${admin.userId}`, { token: key.body.key });
    expect(byKey.status, byKey.text).toBe(403);
    expect((await liveMailbox(mailbox.id))?.deletedAt).toBeNull();
    expect((await app.api('DELETE', `/api/members/${admin.userId}`, { token: admin.token })).status).toBe(204);
    expect((await liveMailbox(mailbox.id))?.deletedAt).not.toBeNull();
  });

  it('P-06 the leaver\'s synced mail is deleted after the commit; should the process die before, the hourly revocation job deletes it and asks Google', async () => {
    const owner = await signUp(app);
    const member = await join(owner, 'member');
    const synced = (mailboxId: string) => db().select({ id: messages.id }).from(messages).where(and(eq(messages.mailboxId, mailboxId), eq(messages.synced, true)));
    const copy = (mailboxId: string, n: number) => ({
      workspaceId: owner.workspaceId, mailboxId, direction: 'inbound' as const, status: 'received' as const, synced: true,
      gmailMessageId: `g-${mailboxId}-${n}`, fromAddress: 'someone@else.test', toAddresses: ['x@acme.test'], subject: 'private',
    });

    const first = await connectedMailbox(app, member.token, `synced-${Date.now()}@acme.test`, { sync: true });
    await db().insert(messages).values([copy(first.id, 1), copy(first.id, 2)]);
    expect((await app.api('DELETE', '/api/members/me', { token: member.token })).status).toBe(204);
    expect(await synced(first.id)).toEqual([]);

    // The crash window: the leave committed, nothing after it ran.
    const again = await join(owner, 'member');
    const second = await connectedMailbox(app, again.token, `crashed-${Date.now()}@acme.test`, { sync: true });
    await db().insert(messages).values([copy(second.id, 1)]);
    await db().transaction(async (tx) => {
      await app.services.mailboxes.removeMemberMailboxesWithin(tx as unknown as typeof app.database.db, { workspaceId: owner.workspaceId, userId: again.userId }, `user:${again.userId}`);
    });
    expect(await synced(second.id)).toHaveLength(1);
    expect((await liveMailbox(second.id))?.refresh).not.toBe('');
    const revokes = app.sandbox.control.callCounts().revoke;
    await app.services.mailboxes.retryRevocations();
    expect(await synced(second.id)).toEqual([]);
    expect((await liveMailbox(second.id))?.refresh).toBe('');
    expect(app.sandbox.control.callCounts().revoke).toBe(revokes + 1);
  });

  it('P-03 the Gmail access grants a leaver received end with the membership: invited back, they read nothing with them (an attacker\'s finding)', async () => {
    const owner = await signUp(app);
    const mailbox = await connectedMailbox(app, owner.token, `granting-${Date.now()}@acme.test`, { sync: true });
    app.sandbox.control.createMailbox({ email: 'friend@elsewhere.test' });
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: mailbox.id, to: 'friend@elsewhere.test', subject: 'Granted', text: 'GRANTED-BODY' } });
    expect(sent.status, sent.text).toBe(201);
    const member = await join(owner, 'member');
    const grant = await app.api('POST', '/api/grants', { token: owner.token, json: { messageId: sent.body.id, granteeUserId: member.userId, expiresAt: new Date(Date.now() + 86_400_000).toISOString() } });
    expect(grant.status, grant.text).toBe(201);
    const read = (token: string) => app.api('GET', `/api/messages/${sent.body.id}/content?basis=grant`, { token });
    expect((await read(member.token)).status).toBe(200);

    expect((await app.api('DELETE', '/api/members/me', { token: member.token })).status).toBe(204);
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: member.email, role: 'member' } });
    const back = await acceptInvitation(app, { token: invite.body.token, password: 'member password long' });
    expect(back.status, back.text).toBe(201);
    const again = await read(back.body.token);
    expect(again.status).toBe(403);
    expect(again.body.error.code).toBe('no_active_grant');
    const given = (await app.api('GET', '/api/grants', { token: owner.token })).body.grants as { id: string; status: string }[];
    expect(given.find((g) => g.id === grant.body.id)?.status).toBe('revoked');
    const audit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.subjectId, grant.body.id), eq(auditLog.action, 'grant.revoked')));
    expect(audit).toEqual([expect.objectContaining({ actor: `user:${member.userId}`, detail: expect.objectContaining({ reason: 'member_removed' }) })]);
  });

  it.runIf(process.env.TEST_DATABASE_URL)('a leave meeting a sync insert of the leaver\'s mailbox waits for it, no deadlock (a reviewer\'s repro)', async () => {
    const owner = await signUp(app);
    const member = await join(owner, 'member');
    const mailbox = await connectedMailbox(app, member.token, `syncing-${Date.now()}@acme.test`, { sync: true });
    const sync = new pg.Client({ connectionString: (app.database as unknown as { url: string }).url });
    await sync.connect();
    try {
      // What sync's insertSyncedMessage does: the mailbox row for share, then a message naming the workspace.
      await sync.query('begin');
      await sync.query('select id from mailboxes where id = $1 and deleted_at is null for share', [mailbox.id]);
      const leaving = app.api('DELETE', '/api/members/me', { token: member.token });
      await waitForLockWaiters(sync, 1);
      await sync.query(
        `insert into messages (workspace_id, mailbox_id, direction, status, synced, gmail_message_id, from_address, to_addresses)
         values ($1, $2, 'inbound', 'received', true, 'g-race', 'a@b.test', '{}')`,
        [owner.workspaceId, mailbox.id],
      );
      await sync.query('commit');
      const left = await leaving;
      expect(left.status, left.text).toBe(204);
      expect((await liveMailbox(mailbox.id))?.deletedAt).not.toBeNull();
      // The synced copy the sync committed first is deleted after the leave's commit.
      expect(await db().select({ id: messages.id }).from(messages).where(and(eq(messages.mailboxId, mailbox.id), eq(messages.synced, true)))).toEqual([]);
    } finally {
      await sync.end();
    }
  });

  it.runIf(process.env.TEST_DATABASE_URL)('a leave that the database picks as a deadlock\'s victim is 409 concurrent_change with Retry-After, changes nothing, and passes when retried', async () => {
    const owner = await signUp(app);
    const member = await join(owner, 'member');
    const mailbox = await connectedMailbox(app, member.token, `deadlock-${Date.now()}@acme.test`);
    const other = new pg.Client({ connectionString: (app.database as unknown as { url: string }).url });
    await other.connect();
    try {
      // This session detects deadlocks late, so the request's session (1 s) is the one that does.
      await other.query(`set deadlock_timeout = '20s'`);
      await other.query('begin');
      await other.query('select id from workspaces where id = $1 for update', [owner.workspaceId]);
      // The leave marks its mailbox first, then waits here for the workspace's row...
      const leaving = app.api('DELETE', '/api/members/me', { token: member.token });
      await waitForLockWaiters(other, 1);
      // ...and this session now wants the mailbox's row: each waits for the other.
      const locking = other.query('select id from mailboxes where id = $1 for update', [mailbox.id]);
      const refused = await leaving;
      await locking;
      await other.query('rollback');
      expect(refused.status, refused.text).toBe(409);
      expect(refused.body.error.code).toBe('concurrent_change');
      expect(refused.headers.get('retry-after')).toBe('1');
      expect((await liveMailbox(mailbox.id))?.deletedAt).toBeNull();
      expect((await app.api('GET', '/api/me', { token: member.token })).status).toBe(200);

      const left = await app.api('DELETE', '/api/members/me', { token: member.token });
      expect(left.status, left.text).toBe(204);
      expect((await liveMailbox(mailbox.id))?.deletedAt).not.toBeNull();
    } finally {
      await other.end();
    }
  });

  it('one of two owners leaves; the other stays owner', async () => {
    const owner = await signUp(app);
    const second = await join(owner, 'owner');
    expect((await app.api('DELETE', '/api/members/me', { token: owner.token })).status).toBe(204);
    const members = (await app.api('GET', '/api/members', { token: second.token })).body.members as { userId: string; role: string }[];
    expect(members).toEqual([expect.objectContaining({ userId: second.userId, role: 'owner' })]);
    const refused = await app.api('DELETE', '/api/members/me', { token: second.token });
    expect(refused.status).toBe(409);
  });

  /*
   * A send claim locks its mailbox shared, then (its messages row's foreign key) the workspace's
   * key; a member leaving marks their mailboxes deleted, then locks the workspace. Taken the other
   * way round by the claim (the workspace first), the two deadlocked and the leave answered 409 (a
   * reviewer's finding). Server only: PGlite runs one statement at a time.
   */
  it.runIf(process.env.TEST_DATABASE_URL)('a member leaving while a send claim of their mailbox holds its locks waits for it, then leaves', async () => {
    const owner = await signUp(app);
    const member = await join(owner, 'admin');
    const mailbox = await connectedMailbox(app, member.token, `leaving-${Date.now()}@acme.test`);
    const claim = new pg.Client({ connectionString: (app.database as unknown as { url: string }).url });
    await claim.connect();
    try {
      await claim.query('begin');
      const lock = lockSendingMailboxSql(mailbox.id);
      await db().execute(sql`select 1`); // the app's pool is warm
      await claim.query(new PgDialect().sqlToQuery(lock).sql, new PgDialect().sqlToQuery(lock).params);
      const leaving = app.api('DELETE', '/api/members/me', { token: member.token });
      await new Promise((resolve) => setTimeout(resolve, 1000)); // the leave now waits for the mailbox row
      // The claim's messages row takes the workspace's key: it must not wait for the leave.
      await claim.query('select 1 from workspaces where id = $1 for key share', [owner.workspaceId]);
      await claim.query('commit');
      const left = await leaving;
      expect(left.status, left.text).toBe(204);
      expect((await liveMailbox(mailbox.id))?.deletedAt).not.toBeNull();
    } finally {
      await claim.end();
    }
  });
});
