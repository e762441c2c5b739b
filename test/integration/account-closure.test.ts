import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-13 account closure: POST /api/privacy/delete-account revokes the user's Google grants at
 * once (the sandbox records it), ends every session at once, closes the workspaces the user
 * solely owns, tells the purge date, and after 30 simulated days the purge leaves nothing.
 */

const DAY = 86_400_000;
let clock = Date.now();
let app: TestApp;
const db = () => app.database.db;

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
});
afterAll(async () => {
  await app?.close();
});

async function join(owner: { token: string }, email: string, role: 'member' | 'owner') {
  const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  expect(invite.status, invite.text).toBe(201);
  const accepted = await acceptInvitation(app, { token: invite.body.token, password: 'member password long' });
  expect(accepted.status, accepted.text).toBe(201);
  return accepted.body.token as string;
}

describe('P-13 account closure', () => {
  it('P-13 a wrong password is refused with 403 and closes nothing', async () => {
    const owner = await signUp(app);
    const res = await app.api('POST', '/api/privacy/delete-account', { token: owner.token, json: { password: 'not my password' } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('password_incorrect');
    expect((await app.api('POST', '/api/privacy/delete-account', { token: owner.token, json: {} })).status).toBe(400);
    expect((await app.api('GET', '/api/me', { token: owner.token })).status).toBe(200);
  });

  it('P-13 closing revokes Google at once, ends every session, closes the sole-owned workspace, and after 30 days leaves nothing', async () => {
    const owner = await signUp(app, { email: `closer-${Date.now()}@example.com` });
    const bystander = await signUp(app);
    const memberEmail = `member-${Date.now()}@example.com`;
    const memberToken = await join(owner, memberEmail, 'member');
    const gmailAddress = `closer-mail-${Date.now()}@acme.test`;
    const mailbox = await connectedMailbox(app, owner.token, gmailAddress, { sync: true });
    expect((await app.api('PATCH', '/api/workspace', { token: owner.token, json: { postalAddress: '1 Main St' } })).status).toBe(200);
    const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));
    const audience = await fixtures.audience(2, { prefix: 'closure' });
    const campaignId = await fixtures.launched(mailbox.id, 'Closing soon', audience.map((c) => c.id));
    await fixtures.drain(campaignId);
    const second = await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } });
    expect(second.status).toBe(200);
    const bystanderContact = await app.api('POST', '/api/contacts', { token: bystander.token, json: { email: 'kept@bystander.test' } });

    // A workspace someone else still uses is not closed under them: refused, and Google is told nothing.
    const revokesBefore = app.sandbox.control.callCounts().revoke;
    const refused = await app.api('POST', '/api/privacy/delete-account', { token: owner.token, json: { password: owner.password } });
    expect(refused.status, refused.text).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'workspace_has_members', details: { workspaceIds: [owner.workspaceId] } });
    expect(app.sandbox.control.callCounts().revoke).toBe(revokesBefore);
    expect((await app.api('GET', '/api/me', { token: memberToken })).status).toBe(200);
    const member = (await app.api('GET', '/api/members', { token: owner.token })).body.members.find((m: { email: string }) => m.email === memberEmail);
    expect((await app.api('DELETE', `/api/members/${member.userId}`, { token: owner.token })).status).toBe(204);

    const closed = await app.api('POST', '/api/privacy/delete-account', { token: owner.token, json: { password: owner.password } });
    expect(closed.status, closed.text).toBe(200);
    expect(closed.body).toEqual({ status: 'closed', purgeAfter: new Date(clock + 30 * DAY).toISOString(), closedWorkspaceIds: [owner.workspaceId] });

    // Google saw the revocation at once.
    expect(app.sandbox.control.callCounts().revoke).toBe(revokesBefore + 1);
    expect(app.sandbox.control.getMailbox(gmailAddress)!.grants).toEqual([]);
    // Every session ends at once: both of the owner's.
    for (const token of [owner.token, second.body.token as string]) {
      const me = await app.api('GET', '/api/me', { token });
      expect(me.status).toBe(401);
    }
    expect((await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).status).toBe(401);
    // Another workspace is untouched.
    expect((await app.api('GET', `/api/contacts/${bystanderContact.body.id}`, { token: bystander.token })).status).toBe(200);
    const requested = rowsOf<{ subject_type: string; detail: { purgeAfter: string } }>(
      await db().execute(sql`select subject_type, detail from audit_log where workspace_id = ${owner.workspaceId}::uuid and action = 'deletion.requested' order by subject_type`),
    );
    expect(requested.map((r) => r.subject_type)).toEqual(['mailbox', 'user', 'workspace']);

    expect(Object.keys(await tablesMentioning(db(), owner.email))).toEqual(['users']);
    clock += 30 * DAY + 1000;
    try {
      const purged = await app.services.purge.runOnce();
      expect(purged).toMatchObject({ workspace: 1, user: 1 });
      for (const needle of [owner.email, gmailAddress, ...audience.map((c) => c.email)]) {
        expect(await tablesMentioning(db(), needle), needle).toEqual({});
      }
      // What remains is the audit trail, which names ids only and records that the purge completed.
      for (const id of [owner.workspaceId, owner.userId, mailbox.id]) expect(Object.keys(await tablesMentioning(db(), id)), id).toEqual(['audit_log']);
      const completed = rowsOf<{ subject_type: string }>(
        await db().execute(sql`select subject_type from audit_log where workspace_id = ${owner.workspaceId}::uuid and action = 'deletion.completed' order by subject_type`),
      );
      expect(completed.map((r) => r.subject_type)).toEqual(['mailbox', 'user', 'workspace']);
      // The member keeps their own account, without the closed workspace.
      expect(Object.keys(await tablesMentioning(db(), memberEmail))).toEqual(['users']);
      expect((await app.api('GET', `/api/contacts/${bystanderContact.body.id}`, { token: bystander.token })).status).toBe(200);
      // The address may sign up again.
      expect((await app.api('POST', '/api/auth/signup', { json: { email: owner.email, password: 'a new long password', workspaceName: 'Again' } })).status).toBe(202);
      expect(app.services.accountMailer.outbox!.at(-1)!.subject).toBe('Confirm your inboxtrail account');
    } finally {
      clock -= 30 * DAY + 1000;
    }
  });

  it('P-13 a co-owned workspace stays open when one owner closes their account', async () => {
    const first = await signUp(app);
    const coOwnerToken = await join(first, `coowner-${Date.now()}@example.com`, 'owner');
    const contact = await app.api('POST', '/api/contacts', { token: first.token, json: { email: 'shared@example.test' } });
    const closed = await app.api('POST', '/api/privacy/delete-account', { token: first.token, json: { password: first.password } });
    expect(closed.body.closedWorkspaceIds).toEqual([]);
    expect((await app.api('GET', `/api/contacts/${contact.body.id}`, { token: coOwnerToken })).status).toBe(200);
    // The closed account is no longer listed among the members.
    const members = await app.api('GET', '/api/members', { token: coOwnerToken });
    expect(members.body.members.map((m: { userId: string }) => m.userId)).not.toContain(first.userId);
  });

  it('P-13 an owner whose co-owner closed their account is the last owner: they can neither step down nor leave', async () => {
    const first = await signUp(app);
    const coOwnerEmail = `coowner-${Date.now()}@example.com`;
    const coOwnerToken = await join(first, coOwnerEmail, 'owner');
    await join(first, `admin-${Date.now()}@example.com`, 'member');
    const closed = await app.api('POST', '/api/privacy/delete-account', { token: coOwnerToken, json: { password: 'member password long' } });
    expect(closed.status, closed.text).toBe(200);
    expect(closed.body.closedWorkspaceIds).toEqual([]);

    const demoted = await app.api('PATCH', `/api/members/${first.userId}`, { token: first.token, json: { role: 'admin' } });
    expect(demoted.status, demoted.text).toBe(409);
    expect(demoted.body.error.code).toBe('last_owner');
    const left = await app.api('DELETE', `/api/members/${first.userId}`, { token: first.token });
    expect(left.status).toBe(409);
    expect(left.body.error.code).toBe('last_owner');
    const owners = (await app.api('GET', '/api/members', { token: first.token })).body.members.filter((m: { role: string }) => m.role === 'owner');
    expect(owners.map((m: { userId: string }) => m.userId)).toEqual([first.userId]);
  });

  it('P-13 an owner stepping down while their co-owner closes their account, at the same moment: the workspace keeps a live owner', async () => {
    for (let round = 0; round < 6; round += 1) {
      const first = await signUp(app);
      const coOwnerToken = await join(first, `race-${round}-${Date.now()}@example.com`, 'owner');
      const [closed, demoted] = await Promise.all([
        app.api('POST', '/api/privacy/delete-account', { token: coOwnerToken, json: { password: 'member password long' } }),
        app.api('PATCH', `/api/members/${first.userId}`, { token: first.token, json: { role: 'admin' } }),
      ]);
      const workspace = rowsOf<{ deleted_at: Date | null }>(await db().execute(sql`select deleted_at from workspaces where id = ${first.workspaceId}`))[0]!;
      const liveOwners = rowsOf<{ n: number }>(
        await db().execute(sql`select count(*)::int as n from memberships m join users u on u.id = m.user_id
          where m.workspace_id = ${first.workspaceId} and m.role = 'owner' and u.deleted_at is null`),
      )[0]!.n;
      // Either way the workspace stays with one live owner: never closed under the member who stepped down.
      expect(workspace.deleted_at).toBeNull();
      expect(liveOwners).toBe(1);
      if (demoted.status === 200) {
        // The step-down went first: the co-owner was then its sole owner, and others use it.
        expect(closed.status, closed.text).toBe(409);
        expect(closed.body.error.code).toBe('workspace_has_members');
      } else {
        expect(closed.status, closed.text).toBe(200);
        expect(demoted.body.error.code).toBe('last_owner');
      }
    }
  });
});

describe('P-13 account closure: the password re-check is throttled like a login', () => {
  // Its own app: small limits, and attempts counted apart from the tests above.
  let limited: TestApp;
  beforeAll(async () => {
    limited = await startTestApp({ env: { LOGIN_MAX_FAILURES: '3', LOGIN_MAX_ATTEMPTS_PER_ADDRESS: '5' } });
  });
  afterAll(async () => {
    await limited?.close();
  });

  const closeAccount = (token: string, password: string, forwardedFor?: string) =>
    limited.api('POST', '/api/privacy/delete-account', { token, json: { password }, headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {} });

  async function stillOpen(person: { token: string; userId: string; workspaceId: string }) {
    expect((await limited.api('GET', '/api/me', { token: person.token })).status).toBe(200);
    const [user] = rowsOf<{ deleted_at: unknown }>(await limited.database.db.execute(sql`select deleted_at from users where id = ${person.userId}::uuid`));
    expect(user!.deleted_at).toBeNull();
    const requested = rowsOf(await limited.database.db.execute(sql`select 1 from audit_log where workspace_id = ${person.workspaceId}::uuid and action = 'deletion.requested'`));
    expect(requested).toEqual([]);
  }

  it('P-13 past LOGIN_MAX_FAILURES wrong passwords a session gets 429 too_many_requests, even with the right password, and nothing is closed', async () => {
    const owner = await signUp(limited);
    const gmailAddress = `guarded-${Date.now()}@acme.test`;
    await connectedMailbox(limited, owner.token, gmailAddress);
    const revokesBefore = limited.sandbox.control.callCounts().revoke;

    // Guesses from ever new client addresses: the account's own limit still holds.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await closeAccount(owner.token, `guess ${i}`, `198.51.100.${i}`);
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.body.error.code).toBe('too_many_requests');
        expect(Number(res.headers.get('retry-after'))).toBe(limited.config.login.windowSeconds);
      } else expect(res.body.error.code).toBe('password_incorrect');
    }
    expect(statuses).toEqual([403, 403, 403, 429, 429]);

    const right = await closeAccount(owner.token, owner.password, '198.51.100.99');
    expect([right.status, right.body.error?.code]).toEqual([429, 'too_many_requests']);
    // The same keys as a login: the account's sign-in waits out the window too.
    expect((await limited.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).status).toBe(429);
    await stillOpen(owner);
    expect(limited.sandbox.control.callCounts().revoke).toBe(revokesBefore);
    expect(limited.sandbox.control.getMailbox(gmailAddress)!.grants).not.toEqual([]);
  });

  it("P-13 a stolen session's wrong guesses hold that session only: its owner, signed in elsewhere, still changes the password, which ends the stolen one", async () => {
    const owner = await signUp(limited);
    // The owner's other session (another device), started before the theft.
    const elsewhere = await limited.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } });
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.body.token).not.toBe(owner.token);
    const stolen = owner.token;
    const { maxFailures } = limited.config.login;
    for (let i = 0; i < maxFailures; i += 1) expect((await closeAccount(stolen, `guess ${i}`, `198.51.100.${20 + i}`)).status).toBe(403);
    expect((await closeAccount(stolen, owner.password, '198.51.100.40')).status).toBe(429);
    const changed = await limited.api('PATCH', '/api/me', {
      token: elsewhere.body.token,
      json: { currentPassword: owner.password, newPassword: 'a fresh long password' },
      headers: { 'x-forwarded-for': '198.51.100.41' },
    });
    expect(changed.status, changed.text).toBe(200);
    expect((await limited.api('GET', '/api/me', { token: stolen })).status).toBe(401);
    expect((await limited.api('GET', '/api/me', { token: changed.body.token })).status).toBe(200);
  });

  it('P-13 guesses spread over accounts meet the per-address limit; the address is req.ip (X-Forwarded-For from a trusted proxy)', async () => {
    const [a, b, c] = await Promise.all([signUp(limited), signUp(limited), signUp(limited)]);
    const spray = '203.0.113.7';
    // Five wrong guesses from one client address, at most two per account (under the account limit of 3).
    for (const person of [a!, a!, b!, b!, c!]) expect((await closeAccount(person.token, 'Summer2026!', spray)).status).toBe(403);
    const refused = await closeAccount(c!.token, c!.password, spray);
    expect([refused.status, refused.body.error?.code]).toEqual([429, 'too_many_requests']);
    expect(Number(refused.headers.get('retry-after'))).toBe(limited.config.login.addressWindowSeconds);
    await stillOpen(c!);

    // TRUST_PROXY=loopback in tests: the proxy on loopback names another client, whose count is its own.
    const closed = await closeAccount(c!.token, c!.password, '203.0.113.8');
    expect(closed.status, closed.text).toBe(200);
    expect(closed.body.status).toBe('closed');
  });
});
