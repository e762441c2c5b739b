import { sql } from 'drizzle-orm';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countRows, snapshotCounts } from '../helpers/test-db.js';
import { acceptInvitation, signUp, startTestApp, TEST_ENV, verifySignup, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
/** The membership a session token names (claim `mbr`, src/auth/sessions.ts). */
const membershipClaim = (token: string) => (jwt.decode(token) as jwt.JwtPayload).mbr as unknown;

beforeAll(async () => {
  app = await startTestApp({ env: { LOGIN_MAX_FAILURES: '3' } });
});
afterAll(async () => {
  await app.close();
});

describe('signup and login', () => {
  it('signup mails a confirmation code; the code creates the workspace with its owner and returns a working token', async () => {
    const before = await snapshotCounts(app.database.db);
    const res = await app.api('POST', '/api/auth/signup', {
      json: { email: '  Founder@Example.COM ', password: 'correct horse battery', workspaceName: 'Acme' },
    });
    expect(res.status).toBe(202);
    expect(res.body.status).toBe('verification_sent');
    // Nothing exists but the pending request until the code comes back.
    expect((await snapshotCounts(app.database.db)).users).toBe(before.users);
    const confirmed = await verifySignup(app, 'founder@example.com');
    expect(confirmed.status).toBe(201);
    expect(confirmed.body.user.email).toBe('founder@example.com');
    expect(confirmed.body.workspace.name).toBe('Acme');
    expect(confirmed.body.role).toBe('owner');
    const me = await app.api('GET', '/api/me', { token: confirmed.body.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: { email: 'founder@example.com' }, workspace: { name: 'Acme' }, role: 'owner' });
    // A code works once.
    const again = await verifySignup(app, 'founder@example.com');
    expect([again.status, again.body.error.code]).toEqual([404, 'signup_code_invalid']);
  });

  it('signup with an existing address answers exactly like a new one, creates nothing, and mails the owner instead', async () => {
    const first = await signUp(app);
    const before = await snapshotCounts(app.database.db);
    const existing = await app.api('POST', '/api/auth/signup', {
      json: { email: first.email.toUpperCase(), password: 'another long password', workspaceName: 'Dup' },
    });
    const fresh = await app.api('POST', '/api/auth/signup', {
      json: { email: `fresh-${Date.now()}@example.com`, password: 'another long password', workspaceName: 'Dup' },
    });
    expect(existing.status).toBe(202);
    expect(existing.text).toBe(fresh.text);
    const after = await snapshotCounts(app.database.db);
    for (const table of ['users', 'workspaces', 'memberships']) expect(after[table], table).toBe(before[table]);
    const outbox = app.services.accountMailer.outbox!;
    expect(outbox.at(-2)).toMatchObject({ to: first.email, subject: expect.stringContaining('tried to create') });
    expect(outbox.at(-2)!.text).not.toMatch(/code/i);
  });

  it('P-17 stores passwords one-way with a per-user salt', async () => {
    const a = await signUp(app, { password: 'same password for both' });
    const b = await signUp(app, { password: 'same password for both' });
    const result = (await app.database.db.execute(
      sql`select password_hash from users where id in (${a.userId}::uuid, ${b.userId}::uuid)`,
    )) as unknown as { rows: { password_hash: string }[] };
    const [h1, h2] = result.rows.map((r) => r.password_hash);
    expect(h1).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(h2).toMatch(/^scrypt\$/);
    expect(h1).not.toContain('same password');
    expect(h1!.split('$')[4]).not.toBe(h2!.split('$')[4]);
    expect(h1).not.toBe(h2);
  });

  it('login returns a token; wrong password and unknown email give the same 401', async () => {
    const user = await signUp(app);
    const ok = await app.api('POST', '/api/auth/login', { json: { email: user.email, password: user.password } });
    expect(ok.status).toBe(200);
    expect(typeof ok.body.token).toBe('string');

    const wrongPassword = await app.api('POST', '/api/auth/login', { json: { email: user.email, password: 'not the password' } });
    const unknownEmail = await app.api('POST', '/api/auth/login', { json: { email: 'nobody@example.com', password: user.password } });
    expect(wrongPassword.status).toBe(401);
    expect(unknownEmail.status).toBe(401);
    expect(wrongPassword.body).toEqual(unknownEmail.body);
    expect(wrongPassword.body.error.code).toBe('invalid_credentials');
  });

  it('P-17 the session token pins its algorithm and expires', async () => {
    const user = await signUp(app);
    const decoded = jwt.decode(user.token, { complete: true })!;
    expect(decoded.header.alg).toBe('HS256');
    const payload = decoded.payload as jwt.JwtPayload;
    expect(payload.exp! - payload.iat!).toBe(3600);

    const unsigned = jwt.sign({ wid: user.workspaceId }, '', { algorithm: 'none', subject: user.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api' });
    expect((await app.api('GET', '/api/me', { token: unsigned })).status).toBe(401);

    const expired = jwt.sign({ wid: user.workspaceId, exp: Math.floor(Date.now() / 1000) - 10 }, TEST_ENV.JWT_SECRET, {
      algorithm: 'HS256',
      subject: user.userId,
      issuer: 'inboxtrail',
      audience: 'inboxtrail-api',
    });
    const res = await app.api('GET', '/api/me', { token: expired });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('token_expired');
  });

  it('login is rate limited after repeated failures, and the limit is per address+email', async () => {
    const user = await signUp(app);
    for (let i = 0; i < 3; i += 1) {
      expect((await app.api('POST', '/api/auth/login', { json: { email: user.email, password: `wrong ${i}` } })).status).toBe(401);
    }
    const limited = await app.api('POST', '/api/auth/login', { json: { email: user.email, password: user.password } });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('too_many_requests');
    expect(limited.headers.get('retry-after')).toBeTruthy();

    // Another account from the same address is not locked out by the first one's failures.
    const other = await signUp(app);
    expect((await app.api('POST', '/api/auth/login', { json: { email: other.email, password: other.password } })).status).toBe(200);
  });

  it('successful logins do not count toward the limit', async () => {
    const user = await signUp(app);
    for (let i = 0; i < 5; i += 1) {
      expect((await app.api('POST', '/api/auth/login', { json: { email: user.email, password: user.password } })).status).toBe(200);
    }
  });

  it("a stranger's wrong passwords lock the account for unknown clients, never for a device that signed in before; a device's own failures are limited", async () => {
    const user = await signUp(app);
    // From a client address of this test's own (TRUST_PROXY=loopback): the per-address count is not the subject here.
    const login = (json: Record<string, unknown>) => app.api('POST', '/api/auth/login', { json: { email: user.email, ...json }, headers: { 'x-forwarded-for': '198.51.100.21' } });
    const first = await login({ password: user.password });
    expect(first.status).toBe(200);
    const deviceToken = first.body.deviceToken as string;
    expect(deviceToken).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // The token names a hash of the address, never the address.
    expect(Buffer.from(deviceToken.split('.')[1]!, 'base64url').toString()).not.toContain(user.email);

    // A stranger (no device token, another one's, a forged one) fills the account's window.
    for (let i = 0; i < 3; i += 1) expect((await login({ password: `stranger ${i}` })).status).toBe(401);
    expect((await login({ password: user.password })).status).toBe(429);
    const other = await signUp(app);
    const othersToken = (await app.api('POST', '/api/auth/login', { json: { email: other.email, password: other.password } })).body.deviceToken as string;
    const [header, payload] = deviceToken.split('.');
    for (const notThisDevice of [othersToken, `${header}.${payload}.forged-signature`, 'not a token at all']) {
      const refused = await login({ password: user.password, deviceToken: notThisDevice });
      expect([refused.status, refused.body.error?.code]).toEqual([429, 'too_many_requests']);
    }
    expect((await login({ password: user.password, deviceToken: 'x'.repeat(2049) })).status).toBe(400);

    // The owner's own device still signs in, and is handed a fresh token.
    const known = await login({ password: user.password, deviceToken });
    expect(known.status).toBe(200);
    expect(typeof known.body.token).toBe('string');
    expect(typeof known.body.deviceToken).toBe('string');

    // Its own wrong passwords count against it, with the account's limit.
    for (let i = 0; i < 3; i += 1) expect((await login({ password: `thief ${i}`, deviceToken })).status).toBe(401);
    const limited = await login({ password: user.password, deviceToken });
    expect([limited.status, limited.body.error?.code]).toEqual([429, 'too_many_requests']);
    expect(limited.headers.get('retry-after')).toBeTruthy();
    // Another known device of the same person is not held by that one.
    const second = await login({ password: user.password, deviceToken: known.body.deviceToken });
    expect(second.status).toBe(200);

    // A new password ends every device token of the account: each is an unknown client again.
    const changed = await app.api('PATCH', '/api/me', { token: second.body.token, json: { currentPassword: user.password, newPassword: 'a brand new password 1' } });
    expect(changed.status).toBe(200);
    const stale = await login({ password: 'a brand new password 1', deviceToken: second.body.deviceToken });
    expect([stale.status, stale.body.error?.code]).toEqual([429, 'too_many_requests']);
  });

  it("strangers' wrong passwords never keep a signed-in owner from changing the password; the owner's own wrong re-checks are limited", async () => {
    const user = await signUp(app);
    const stranger = { 'x-forwarded-for': '198.51.100.22' };
    for (let i = 0; i < 3; i += 1) expect((await app.api('POST', '/api/auth/login', { json: { email: user.email, password: `stranger ${i}` }, headers: stranger })).status).toBe(401);
    expect((await app.api('POST', '/api/auth/login', { json: { email: user.email, password: user.password }, headers: stranger })).status).toBe(429);
    const change = (currentPassword: string) => app.api('PATCH', '/api/me', { token: user.token, json: { currentPassword, newPassword: 'rotated under attack 1' }, headers: { 'x-forwarded-for': '198.51.100.23' } });
    for (let i = 0; i < 3; i += 1) expect((await change(`thief guess ${i}`)).status).toBe(403);
    const held = await change(user.password);
    expect([held.status, held.body.error?.code]).toEqual([429, 'too_many_requests']);

    const owner = await signUp(app);
    for (let i = 0; i < 5; i += 1) await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: `stranger ${i}` }, headers: stranger });
    const rotated = await app.api('PATCH', '/api/me', { token: owner.token, json: { currentPassword: owner.password, newPassword: 'rotated under attack 1' }, headers: { 'x-forwarded-for': '198.51.100.24' } });
    expect(rotated.status).toBe(200);
  });
});

describe('names go into mail: one line only', () => {
  it('a workspace or person name with a line break is a 400 and changes nothing (it would start a header in the invitation mail)', async () => {
    const owner = await signUp(app);
    const forged = 'Acme\r\nBcc: victim@example.com\r\n\r\nYour confirmation code is: FAKE';
    const before = await snapshotCounts(app.database.db);
    const renamed = await app.api('PATCH', '/api/workspace', { token: owner.token, json: { name: forged } });
    expect([renamed.status, renamed.body.error.code]).toEqual([400, 'validation_failed']);
    const signup = await app.api('POST', '/api/auth/signup', { json: { email: `lines-${Date.now()}@example.com`, password: 'a long enough password', workspaceName: forged } });
    expect(signup.status).toBe(400);
    const named = await app.api('PATCH', '/api/me', { token: owner.token, json: { name: 'Ann\u2028Bcc: x@example.com' } });
    expect(named.status).toBe(400);
    expect(await snapshotCounts(app.database.db)).toEqual(before);
    expect((await app.api('GET', '/api/me', { token: owner.token })).body.workspace.name).not.toContain('Bcc');
  });
});

describe('invitations and roles', () => {
  it('two invitations of one new address confirmed at the same moment: one account, never a 500; the other invitation then joins with its password', async () => {
    const email = `twice-${Date.now()}@example.com`;
    const owners = await Promise.all([signUp(app), signUp(app)]);
    const tokens = await Promise.all(owners.map(async (owner) => (await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } })).body.token as string));
    const asked = await Promise.all(tokens.map((token) => app.api('POST', '/api/invitations/accept', { json: { token } })));
    expect(asked.map((a) => a.status)).toEqual([202, 202]);
    const codes = (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email && m.subject.startsWith('Confirm')).map((m) => /code is:\n\n(\S+)/.exec(m.text)![1]!);
    expect(codes).toHaveLength(2);
    const confirmed = await Promise.all(codes.map((code) => app.api('POST', '/api/auth/signup/verify', { json: { code, password: 'joint password 123' } })));
    expect(confirmed.map((c) => c.status).sort()).toEqual([201, 409]);
    expect(confirmed.find((c) => c.status === 409)!.body.error.code).toBe('email_taken');
    const joined = confirmed.find((c) => c.status === 201)!.body;
    const users = (await app.database.db.execute(sql`select count(*)::int as n from users where email = ${email}`)) as unknown as { rows: { n: number }[] };
    expect(users.rows[0]!.n).toBe(1);

    const otherToken = tokens[owners.findIndex((o) => o.workspaceId !== joined.workspace.id)]!;
    // A wrong password is answered like no account at all (202), never 401: the inviter holds the token.
    expect((await acceptInvitation(app, { token: otherToken, password: 'another password 123' })).status).toBe(202);
    const second = await acceptInvitation(app, { token: otherToken, password: 'joint password 123' });
    expect(second.status).toBe(201);
    expect(second.body.user.id).toBe(joined.user.id);
  });

  it('P-12 a member removed from their only workspace still reaches their account: login says no_workspace (never counted as a failure), and they make a workspace of their own', async () => {
    const owner = await signUp(app);
    const email = `removed-${Date.now()}@example.com`;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
    const joined = await acceptInvitation(app, { token: invite.body.token, password: 'member password 123' });
    expect(joined.status).toBe(201);
    expect((await app.api('DELETE', `/api/members/${joined.body.user.id}`, { token: owner.token })).status).toBe(204);

    // More right-password logins than LOGIN_MAX_FAILURES (3 here): each is the same 403, never a 429.
    for (let i = 0; i < 4; i += 1) {
      const login = await app.api('POST', '/api/auth/login', { json: { email, password: 'member password 123' } });
      expect([login.status, login.body.error.code]).toEqual([403, 'no_workspace']);
    }
    const wrong = await app.api('POST', '/api/auth/workspaces', { json: { email, password: 'not the password', workspaceName: 'Mine' } });
    expect([wrong.status, wrong.body.error.code]).toEqual([401, 'invalid_credentials']);
    const [made, twice] = await Promise.all(
      [1, 2].map(() => app.api('POST', '/api/auth/workspaces', { json: { email, password: 'member password 123', workspaceName: 'Mine' } })),
    );
    expect([made!.status, twice!.status].sort()).toEqual([201, 409]);
    const created = made!.status === 201 ? made! : twice!;
    expect(created.body).toMatchObject({ role: 'owner', workspace: { name: 'Mine' }, user: { id: joined.body.user.id } });
    expect((made!.status === 409 ? made! : twice!).body.error.code).toBe('has_workspace');
    // Their own data is theirs again to export (P-12), and login works as for anyone.
    expect((await app.api('GET', '/api/privacy/export', { token: created.body.token })).status).toBe(200);
    expect(membershipClaim(created.body.token)).toMatch(/^\d{16}$/);
    expect((await app.api('POST', '/api/auth/login', { json: { email, password: 'member password 123' } })).status).toBe(200);
    // An account that has a workspace signs in instead; its right password, answered 409, is no failed attempt.
    for (let i = 0; i < 4; i += 1) {
      const again = await app.api('POST', '/api/auth/workspaces', { json: { email: owner.email, password: owner.password, workspaceName: 'Second' } });
      expect([again.status, again.body.error.code]).toEqual([409, 'has_workspace']);
    }
    expect((await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).status).toBe(200);
  });

  it("a member removed and invited back within a token's lifetime gets none of their old bearer tokens back; the new ones work", async () => {
    const owner = await signUp(app);
    const person = await signUp(app);
    const join = async () => {
      const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: person.email, role: 'member' } });
      const joined = await acceptInvitation(app, { token: invite.body.token, password: person.password });
      expect(joined.status).toBe(201);
      return joined.body.token as string;
    };
    const loginThere = async () => {
      const login = await app.api('POST', '/api/auth/login', { json: { email: person.email, password: person.password, workspaceId: owner.workspaceId } });
      expect(login.status).toBe(200);
      return login.body.token as string;
    };
    const statusOf = async (token: string) => {
      const res = await app.api('GET', '/api/me', { token });
      return `${res.status} ${res.body.error?.code ?? res.body.workspace.id}`;
    };
    const remove = async () => expect((await app.api('DELETE', `/api/members/${person.userId}`, { token: owner.token })).status).toBe(204);

    // Tokens of the first membership: the invitation's and a login's.
    const accepted = await join();
    const loggedIn = await loginThere();
    // A request of that membership still running (a CSV import rechecks before each batch).
    const inFlight = await app.services.auth.authenticate(loggedIn);
    await remove();
    const rejoined = await join();
    // Refused as a session a password change ended is (invalid_token); the new membership's token works.
    for (const old of [accepted, loggedIn]) expect(await statusOf(old)).toBe('401 invalid_token');
    await expect(app.services.auth.recheck(inFlight)).rejects.toMatchObject({ code: 'invalid_token' });
    expect(await statusOf(rejoined)).toBe(`200 ${owner.workspaceId}`);
    expect(await statusOf(await loginThere())).toBe(`200 ${owner.workspaceId}`);
    // The person's own workspace (signup's token) is another membership, untouched.
    expect(await statusOf(person.token)).toBe(`200 ${person.workspaceId}`);

    // A password change's successor token names the membership too; leaving ends it like a removal.
    const changed = await app.api('PATCH', '/api/me', { token: rejoined, json: { currentPassword: person.password, newPassword: 'a-new-long-password' } });
    expect(changed.status).toBe(200);
    person.password = 'a-new-long-password';
    const successor = changed.body.token as string;
    expect(await statusOf(successor)).toBe(`200 ${owner.workspaceId}`);
    // A token signed before memberships were named in tokens (no claim) works until it expires.
    const legacy = jwt.sign({ wid: owner.workspaceId, sv: 1 }, TEST_ENV.JWT_SECRET, { algorithm: 'HS256', subject: person.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api', expiresIn: 60 });
    expect(await statusOf(legacy)).toBe(`200 ${owner.workspaceId}`);
    expect((await app.api('DELETE', '/api/members/me', { token: successor })).status).toBe(204);
    const third = await join();
    expect(await statusOf(successor)).toBe('401 invalid_token');
    expect(await statusOf(third)).toBe(`200 ${owner.workspaceId}`);

    // Every way a token is issued names the membership: signup, invitation, login (chosen
    // workspace or the default one), a password change's successor (own workspace: the P-12 test).
    const defaultLogin = await app.api('POST', '/api/auth/login', { json: { email: person.email, password: person.password } });
    for (const token of [person.token, accepted, loggedIn, successor, defaultLogin.body.token]) expect(membershipClaim(token)).toMatch(/^\d{16}$/);
  });

  it('P-13 an account closed while it asks for a workspace of its own gets none (it would outlive the purge)', async () => {
    for (let round = 0; round < 8; round += 1) {
      const owner = await signUp(app);
      const [closed, made] = await Promise.all([
        app.api('POST', '/api/privacy/delete-account', { token: owner.token, json: { password: owner.password } }),
        (async () => {
          // Spread the second request over the closure's own password check.
          await new Promise((resolve) => setTimeout(resolve, round * 8));
          return app.api('POST', '/api/auth/workspaces', { json: { email: owner.email, password: owner.password, workspaceName: 'Late' } });
        })(),
      ]);
      expect(closed.status).toBe(200);
      expect([401, 409], made.text).toContain(made.status);
    }
    const orphans = (await app.database.db.execute(sql`select count(*)::int as n from workspaces where name = 'Late'`)) as unknown as { rows: { n: number }[] };
    expect(orphans.rows[0]!.n).toBe(0);
  });

  it('inviting someone who is a member already is 409 already_member; an invitation they accept after joining is too, and leaves their role as it was', async () => {
    const owner = await signUp(app);
    const email = `member-twice-${Date.now()}@example.com`;
    const first = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
    const second = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'owner' } });
    expect((await acceptInvitation(app, { token: first.body.token, password: 'member password 123' })).status).toBe(201);
    const again = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: email.toUpperCase(), role: 'admin' } });
    expect([again.status, again.body.error.code]).toEqual([409, 'already_member']);
    const late = await acceptInvitation(app, { token: second.body.token, password: 'member password 123' });
    expect([late.status, late.body.error.code]).toEqual([409, 'already_member']);
    // A right password answered 409 is no failed attempt: more of them than LOGIN_MAX_FAILURES (3) lock nothing.
    for (let i = 0; i < 4; i += 1) expect((await acceptInvitation(app, { token: second.body.token, password: 'member password 123' })).status).toBe(409);
    expect((await app.api('POST', '/api/auth/login', { json: { email, password: 'member password 123' } })).status).toBe(200);
    const members = (await app.api('GET', '/api/members', { token: owner.token })).body.members as { email: string; role: string }[];
    expect(members.find((m) => m.email === email)!.role).toBe('member');
  });

  it("an invitation cannot make an account in another person's name: the address's owner chooses its password with the code mailed to it", async () => {
    const owner = await signUp(app);
    const email = `ceo-${Date.now()}@bigcorp.example`;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
    const mailsTo = () => (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email && m.subject.startsWith('Confirm your address to join'));
    // The inviter holds the token and accepts it first, with a password of their choosing.
    const squat = await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password: 'inviter chose this' } });
    expect([squat.status, squat.body.status]).toEqual([202, 'verification_sent']);
    const users = async () => ((await app.database.db.execute(sql`select count(*)::int as n from users where email = ${email}`)) as unknown as { rows: { n: number }[] }).rows[0]!.n;
    expect(await users()).toBe(0);
    // Accepting again and again, even all at once, mails nothing more for a while (no flood, the code mailed stays good).
    const again = await Promise.all(Array.from({ length: 6 }, (_, i) => app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token }, headers: { 'x-forwarded-for': `198.51.100.${40 + i}` } })));
    expect(again.map((a) => a.status)).toEqual([202, 202, 202, 202, 202, 202]);
    expect(mailsTo()).toHaveLength(1);
    expect(mailsTo()[0]!.text).toContain('with the password you choose there');

    // The code works only with a password chosen by whoever holds it: the address's owner.
    const code = /code is:\n\n(\S+)/.exec(mailsTo()[0]!.text)![1]!;
    const withoutPassword = await app.api('POST', '/api/auth/signup/verify', { json: { code } });
    expect([withoutPassword.status, withoutPassword.body.error?.code]).toEqual([400, 'validation_failed']);
    const joined = await app.api('POST', '/api/auth/signup/verify', { json: { code, password: 'the real owner 123', name: 'The Real Owner' } });
    expect(joined.status).toBe(201);
    expect(joined.body.workspace.id).toBe(owner.workspaceId);
    expect(joined.body.user.name).toBe('The Real Owner');
    expect((await app.api('POST', '/api/auth/login', { json: { email, password: 'inviter chose this' } })).status).toBe(401);
    expect((await app.api('POST', '/api/auth/login', { json: { email, password: 'the real owner 123' } })).status).toBe(200);
    expect(await users()).toBe(1);
  });

  it('a new address that signed up on its own meanwhile: the invitation code finds the account made (409), and the invitation then joins with its password', async () => {
    const owner = await signUp(app);
    const email = `both-ways-${Date.now()}@example.com`;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
    expect((await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token } })).status).toBe(202);
    const invitationMail = (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email).at(-1)!;
    expect((await app.api('POST', '/api/auth/signup', { json: { email, password: 'signed up myself 1', workspaceName: 'Mine' } })).status).toBe(202);
    expect((await verifySignup(app, email)).status).toBe(201);
    const late = await app.api('POST', '/api/auth/signup/verify', { json: { code: /code is:\n\n(\S+)/.exec(invitationMail.text)![1]!, password: 'another choice 12' } });
    expect([late.status, late.body.error?.code]).toEqual([409, 'email_taken']);
    expect((await acceptInvitation(app, { token: invite.body.token, password: 'signed up myself 1' })).status).toBe(201);
  });

  it('nobody can use us to flood an address: at most 5 account mails an hour go to one address, whatever asks and from wherever; the answers stay the same', async () => {
    const email = `flooded-${Date.now()}@example.com`;
    const mailsTo = () => (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email).length;
    const signups = [];
    for (let i = 0; i < 4; i += 1) {
      signups.push(await app.api('POST', '/api/auth/signup', { json: { email, password: 'flood password 1', workspaceName: 'F' }, headers: { 'x-forwarded-for': `198.51.100.${60 + i}` } }));
    }
    const owners = await Promise.all([signUp(app), signUp(app), signUp(app)]);
    const accepts = [];
    for (const [i, owner] of owners.entries()) {
      const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
      accepts.push(await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token }, headers: { 'x-forwarded-for': `198.51.100.${70 + i}` } }));
    }
    expect([...signups, ...accepts].map((r) => r.status)).toEqual([202, 202, 202, 202, 202, 202, 202]);
    expect(mailsTo()).toBe(5);
    // A code that was mailed still works.
    expect((await verifySignup(app, email, 'flood password 1')).status).toBe(201);
  });

  it('an invitation of a workspace closed since leads nowhere: 404, no mail, no account, never a 500', async () => {
    const owner = await signUp(app);
    const member = await signUp(app);
    const newcomer = `closed-ws-${Date.now()}@example.com`;
    const invites = await Promise.all([newcomer, member.email].map(async (email) => (await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } })).body.token as string));
    // Asked before the closure: the code is mailed, then the workspace closes.
    expect((await app.api('POST', '/api/invitations/accept', { json: { token: invites[0], password: 'newcomer password 1' } })).status).toBe(202);
    await app.database.db.execute(sql`update workspaces set deleted_at = now() where id = ${owner.workspaceId}::uuid`);
    const confirmed = await verifySignup(app, newcomer);
    expect([confirmed.status, confirmed.body.error?.code]).toEqual([404, 'invitation_not_found']);
    const mailsBefore = (app.services.accountMailer.outbox ?? []).length;
    for (const [token, password] of [[invites[0], 'newcomer password 1'], [invites[1], member.password]] as const) {
      const refused = await app.api('POST', '/api/invitations/accept', { json: { token, password } });
      expect([refused.status, refused.body.error?.code]).toEqual([404, 'invitation_not_found']);
    }
    expect((app.services.accountMailer.outbox ?? []).length).toBe(mailsBefore);
    const users = (await app.database.db.execute(sql`select count(*)::int as n from users where email = ${newcomer}`)) as unknown as { rows: { n: number }[] };
    expect(users.rows[0]!.n).toBe(0);
  });

  it("a removed or demoted inviter's invitations lead nowhere: an admin cannot prepare a way back in", async () => {
    const owner = await signUp(app);
    const admin = await signUp(app);
    const adminInvite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: admin.email, role: 'admin' } });
    const asAdmin = await acceptInvitation(app, { token: adminInvite.body.token, password: admin.password });
    expect(asAdmin.body.role).toBe('admin');
    const invites = await Promise.all(['back-door', 'side-door'].map(async (name) => {
      const email = `${name}-${Date.now()}@example.com`;
      const made = await app.api('POST', '/api/invitations', { token: asAdmin.body.token, json: { email, role: 'admin' } });
      expect(made.status).toBe(201);
      return { email, token: made.body.token as string };
    }));
    // One asked for its code before the admin was removed: the code then leads nowhere either.
    expect((await app.api('POST', '/api/invitations/accept', { json: { token: invites[1]!.token } })).status).toBe(202);
    expect((await app.api('PATCH', `/api/members/${admin.userId}`, { token: owner.token, json: { role: 'member' } })).status).toBe(200);
    for (const { token } of invites) expect((await app.api('POST', '/api/invitations/accept', { json: { token } })).body.error?.code).toBe('invitation_not_found');
    const late = await verifySignup(app, invites[1]!.email, 'side door password 1');
    expect([late.status, late.body.error?.code]).toEqual([404, 'invitation_not_found']);
    expect((await app.api('GET', '/api/invitations', { token: owner.token })).body.invitations).toEqual([]);
  });

  it('accepting an invitation never tells its holder whether the address has an account: the same 202 without a password, with a wrong one, and the same 429 past the limit', async () => {
    const inviter = await signUp(app);
    const member = await signUp(app);
    const nobody = `nobody-${Date.now()}@example.com`;
    const invite = async (email: string) => (await app.api('POST', '/api/invitations', { token: inviter.token, json: { email, role: 'member' } })).body.token as string;
    const mailsTo = (to: string) => (app.services.accountMailer.outbox ?? []).filter((m) => m.to === to);
    const tokens = { member: await invite(member.email), nobody: await invite(nobody) };

    // No password: the same answer for both, again and again, and no failed login on the account.
    for (let i = 0; i < 5; i += 1) {
      const [forMember, forNobody] = await Promise.all([tokens.member, tokens.nobody].map((token) => app.api('POST', '/api/invitations/accept', { json: { token }, headers: { 'x-forwarded-for': `198.51.100.${110 + i}` } })));
      expect([forMember!.status, forMember!.body]).toEqual([forNobody!.status, forNobody!.body]);
      expect(forMember!.body.status).toBe('verification_sent');
    }
    expect((await app.api('POST', '/api/auth/login', { json: { email: member.email, password: member.password }, headers: { 'x-forwarded-for': '198.51.100.120' } })).status).toBe(200);

    // Each address is told its next step: a code for the new one; the account a note with the
    // invitation code to use with its password (no credential: the mailbox alone joins nothing).
    expect(mailsTo(nobody).map((m) => m.subject)).toEqual(['Confirm your address to join a workspace on inboxtrail']);
    const notes = mailsTo(member.email).filter((m) => m.subject === 'An invitation to join a workspace on inboxtrail');
    // Its own signup code was one of the address's 5 mails this hour.
    expect(notes).toHaveLength(4);
    expect(notes[0]!.text).not.toMatch(/code is/);
    const mailed = /Invitation code:\n\n(\S+)/.exec(notes[0]!.text)![1]!;
    expect(mailed).toBe(tokens.member);
    const joined = await app.api('POST', '/api/invitations/accept', { json: { token: mailed, password: member.password } });
    expect([joined.status, joined.body.workspace?.id]).toEqual([201, inviter.workspaceId]);

    // Wrong passwords: counted as failed logins on either address, answered alike, 429 at the same point.
    const other = await signUp(app);
    const pair = { account: await invite(other.email), none: await invite(`none-${Date.now()}@example.com`) };
    const answers = { account: [] as unknown[], none: [] as unknown[] };
    for (const [kind, token] of Object.entries(pair) as ['account' | 'none', string][]) {
      for (let i = 0; i < 4; i += 1) {
        const res = await app.api('POST', '/api/invitations/accept', { json: { token, password: `guess number ${i}` }, headers: { 'x-forwarded-for': kind === 'account' ? '198.51.100.121' : '198.51.100.122' } });
        answers[kind].push([res.status, res.body.status ?? res.body.error?.code]);
      }
    }
    expect(answers.account).toEqual(answers.none);
    expect(answers.account).toEqual([[202, 'verification_sent'], [202, 'verification_sent'], [202, 'verification_sent'], [429, 'too_many_requests']]);
  });

  it("the workspace's name, its owner's text, is never in the subject of invitation mail: only in the body, quoted and cut short", async () => {
    const bait = 'URGENT: your account is suspended - call +1 800 555 0100 to restore access';
    const inviter = await signUp(app, { workspaceName: bait });
    const member = await signUp(app);
    const newcomer = `bait-${Date.now()}@example.com`;
    for (const email of [newcomer, member.email]) {
      const invite = await app.api('POST', '/api/invitations', { token: inviter.token, json: { email, role: 'member' } });
      expect((await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token } })).status).toBe(202);
      const mail = (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email).at(-1)!;
      expect(mail.subject).toMatch(/^(Confirm your address to join|An invitation to join) a workspace on inboxtrail$/);
      expect(mail.text).toContain(`the workspace named “${bait.slice(0, 59)}…”`);
      expect(mail.text).not.toContain(bait);
    }
  });

  it('an existing account accepting from a known device is not held by strangers locking the account', async () => {
    const owner = await signUp(app);
    const member = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: member.email, role: 'member' } });
    const device = (await app.api('POST', '/api/auth/login', { json: { email: member.email, password: member.password } })).body.deviceToken as string;
    const stranger = { 'x-forwarded-for': '198.51.100.31' };
    for (let i = 0; i < 4; i += 1) await app.api('POST', '/api/auth/login', { json: { email: member.email, password: `stranger ${i}` }, headers: stranger });
    expect((await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password: member.password }, headers: stranger })).status).toBe(429);
    const joined = await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password: member.password, deviceToken: device } });
    expect(joined.status).toBe(201);
  });

  it('accepting for an existing account is throttled like a login: guessing its password through an invitation meets the same limit', async () => {
    const victim = await signUp(app);
    const eve = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: eve.token, json: { email: victim.email, role: 'member' } });
    const eveAddress = { 'x-forwarded-for': '198.51.100.25' };
    const accept = (password: string) => app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password }, headers: eveAddress });
    // Each wrong guess is answered as for an address without an account (202), and counted.
    for (let i = 0; i < 3; i += 1) expect((await accept(`guess number ${i}`)).body.status).toBe('verification_sent');
    const limited = await accept(victim.password);
    expect([limited.status, limited.body.error?.code]).toEqual([429, 'too_many_requests']);
    // The same count as the login's: the account is held there too.
    expect((await app.api('POST', '/api/auth/login', { json: { email: victim.email, password: victim.password }, headers: { 'x-forwarded-for': '198.51.100.26' } })).status).toBe(429);
    const members = await app.api('GET', '/api/members', { token: eve.token });
    expect(members.body.members.map((m: { email: string }) => m.email)).not.toContain(victim.email);
  });

  it('an admin invites, the invitee accepts with a new account, and lands in the workspace with that role', async () => {
    const owner = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'New.Member@Example.com', role: 'admin' } });
    expect(invite.status).toBe(201);
    expect(invite.body.invitation).toMatchObject({ email: 'new.member@example.com', role: 'admin' });
    expect(typeof invite.body.token).toBe('string');

    const pending = await app.api('GET', '/api/invitations', { token: owner.token });
    expect(pending.body.invitations.map((i: { email: string }) => i.email)).toEqual(['new.member@example.com']);

    const accepted = await acceptInvitation(app, { token: invite.body.token, password: 'member password 123' });
    expect(accepted.status).toBe(201);
    expect(accepted.body).toMatchObject({ role: 'admin', workspace: { id: owner.workspaceId } });

    const members = await app.api('GET', '/api/members', { token: accepted.body.token });
    expect(members.body.members.map((m: { role: string }) => m.role).sort()).toEqual(['admin', 'owner']);

    // Single use.
    const again = await acceptInvitation(app, { token: invite.body.token, password: 'member password 123' });
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe('invitation_not_found');
  });

  it('an existing account joins a second workspace by proving its password', async () => {
    const ownerA = await signUp(app);
    const ownerB = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: ownerA.token, json: { email: ownerB.email, role: 'member' } });
    const wrong = await acceptInvitation(app, { token: invite.body.token, password: 'definitely wrong pw' });
    expect([wrong.status, wrong.body.status]).toEqual([202, 'verification_sent']);
    const right = await acceptInvitation(app, { token: invite.body.token, password: ownerB.password });
    expect(right.status).toBe(201);
    expect(right.body.workspace.id).toBe(ownerA.workspaceId);

    // Login picks the first workspace unless asked for another one.
    const defaultLogin = await app.api('POST', '/api/auth/login', { json: { email: ownerB.email, password: ownerB.password } });
    expect((await app.api('GET', '/api/me', { token: defaultLogin.body.token })).body.workspace.id).toBe(ownerB.workspaceId);
    const chosen = await app.api('POST', '/api/auth/login', { json: { email: ownerB.email, password: ownerB.password, workspaceId: ownerA.workspaceId } });
    const me = await app.api('GET', '/api/me', { token: chosen.body.token });
    expect(me.body).toMatchObject({ workspace: { id: ownerA.workspaceId }, role: 'member' });
  });

  it('members cannot invite; admins cannot invite owners', async () => {
    const owner = await signUp(app);
    const memberInvite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'm@example.com', role: 'member' } });
    const member = await acceptInvitation(app, { token: memberInvite.body.token, password: 'member password 123' });
    const adminInvite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'a@example.com', role: 'admin' } });
    const admin = await acceptInvitation(app, { token: adminInvite.body.token, password: 'admin password 123' });

    const before = await countRows(app.database.db, 'invitations');
    const byMember = await app.api('POST', '/api/invitations', { token: member.body.token, json: { email: 'x@example.com', role: 'member' } });
    expect(byMember.status).toBe(403);
    expect(byMember.body.error.code).toBe('forbidden');
    const ownerByAdmin = await app.api('POST', '/api/invitations', { token: admin.body.token, json: { email: 'y@example.com', role: 'owner' } });
    expect(ownerByAdmin.status).toBe(403);
    expect(await countRows(app.database.db, 'invitations')).toBe(before);
  });

  it('a revoked invitation cannot be accepted', async () => {
    const owner = await signUp(app);
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'gone@example.com' } });
    expect((await app.api('DELETE', `/api/invitations/${invite.body.invitation.id}`, { token: owner.token })).status).toBe(204);
    const accept = await acceptInvitation(app, { token: invite.body.token, password: 'some password 123' });
    expect(accept.status).toBe(404);
  });
});
