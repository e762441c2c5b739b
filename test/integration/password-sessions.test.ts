import { and, eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createSessionTokens } from '../../src/auth/sessions.js';
import { auditLog } from '../../src/db/schema.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { WebClient } from '../helpers/web-client.js';

/*
 * A new password (PATCH /api/me) ends every other session of the user, in the transaction
 * that changes it (users.session_version + 1): every bearer session token granted at the old
 * version (in any of their workspaces), the caller's own included, is refused with the usual 401
 * `invalid_token`, whenever it was signed; the answer carries the caller's next token; every web
 * session is signed out. API keys, a wrong current
 * password and an address change end nothing. Real HTTP, real database.
 */

let app: TestApp;
const db = () => app.database.db;
const FIRST = 'first-long-password';
const SECOND = 'second-long-password';

beforeAll(async () => {
  app = await startTestApp();
});
afterEach(() => {
  vi.useRealTimers();
});
afterAll(async () => {
  await app?.close();
});

const status = async (token: string) => (await app.api('GET', '/api/me', { token })).status;
const login = async (email: string, password: string, workspaceId?: string) => {
  const res = await app.api('POST', '/api/auth/login', { json: { email, password, workspaceId } });
  expect(res.status, res.text).toBe(200);
  return res.body.token as string;
};
const changePassword = (token: string, currentPassword: string, newPassword: string) =>
  app.api('PATCH', '/api/me', { token, json: { currentPassword, newPassword } });
const corrections = (userId: string) =>
  db().select().from(auditLog).where(and(eq(auditLog.subjectId, userId), eq(auditLog.action, 'account.corrected')));
const webSessionCount = async (userId: string) =>
  rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from web_sessions where user_id = ${userId}::uuid`))[0]!.n;

async function signedInBrowser(email: string, password: string) {
  const browser = new WebClient(app);
  await browser.get('/signin');
  expect((await browser.post('/signin', { email, password })).status).toBe(303);
  return browser;
}

/** A person signed in four ways: the signup token (the caller), a second login, a token for another workspace, a browser; and their workspace's API key. */
async function personWithSessions() {
  const person = await signUp(app, { password: FIRST });
  const other = await login(person.email, FIRST);
  const elsewhere = await signUp(app);
  const invited = await app.api('POST', '/api/invitations', { token: elsewhere.token, json: { email: person.email, role: 'member' } });
  const joined = await acceptInvitation(app, { token: invited.body.token, password: FIRST });
  expect(joined.status, joined.text).toBe(201);
  const otherWorkspace = joined.body.token as string;
  const browser = await signedInBrowser(person.email, FIRST);
  const key = await app.api('POST', '/api/api-keys', { token: person.token, json: { name: 'CRM', scopes: ['read'] } });
  expect(key.status, key.text).toBe(201);
  return { ...person, other, otherWorkspace, browser, apiKey: key.body.key as string };
}

describe('a new password ends every other session', () => {
  it('P-17 bearer tokens issued before it are refused (the caller\'s too), the returned one works, web sessions end, API keys stay; audited', async () => {
    const person = await personWithSessions();
    for (const token of [person.token, person.other, person.otherWorkspace, person.apiKey]) expect(await status(token)).toBe(200);
    expect(await webSessionCount(person.userId)).toBe(1);

    const changed = await changePassword(person.token, FIRST, SECOND);
    expect(changed.status, changed.text).toBe(200);
    const fresh = changed.body.token as string;
    expect(fresh).toEqual(expect.any(String));
    expect(fresh).not.toBe(person.token);

    for (const token of [person.token, person.other, person.otherWorkspace]) {
      const refused = await app.api('GET', '/api/me', { token });
      expect([refused.status, refused.body.error.code]).toEqual([401, 'invalid_token']);
    }
    expect(await status(fresh)).toBe(200);
    expect((await app.api('GET', '/api/me', { token: fresh })).body.workspace.id).toBe(person.workspaceId);
    // The API key is the workspace's credential, not one of the person's sessions.
    expect(await status(person.apiKey)).toBe(200);
    // The browser is signed out; signing in again (new password) and logging in work at once.
    expect((await person.browser.get('/app/mailboxes')).location).toMatch(/^\/signin\?expired=1/);
    expect(await webSessionCount(person.userId)).toBe(0);
    expect(await status(await login(person.email, SECOND))).toBe(200);
    expect((await signedInBrowser(person.email, SECOND)).cookies.has('inboxtrail_session')).toBe(true);

    const [audit] = await corrections(person.userId);
    expect(audit!.detail).toEqual({
      fields: ['password'],
      sessionsEnded: { sessionVersion: 1, webSessions: 1, callerSession: 'token' },
    });
    expect(JSON.stringify(audit)).not.toContain(SECOND);
    expect(JSON.stringify(audit)).not.toContain(fresh);
  });

  it('P-17 a wrong current password, a name or an address change ends nothing', async () => {
    const person = await personWithSessions();
    const wrong = await changePassword(person.token, 'not-the-password', SECOND);
    expect([wrong.status, wrong.body.error.code]).toEqual([403, 'password_incorrect']);
    expect(wrong.body.token).toBeUndefined();
    const named = await app.api('PATCH', '/api/me', { token: person.token, json: { name: 'Ada' } });
    const moved = await app.api('PATCH', '/api/me', { token: person.token, json: { email: `moved-${Date.now()}@example.com`, currentPassword: FIRST } });
    for (const res of [named, moved]) {
      expect(res.status, res.text).toBe(200);
      expect(res.body.token).toBeUndefined();
    }
    for (const token of [person.token, person.other, person.otherWorkspace, person.apiKey]) expect(await status(token)).toBe(200);
    expect((await person.browser.get('/app/mailboxes')).status).toBe(200);
    const users = rowsOf<{ session_version: number }>(await db().execute(sql`select session_version from users where id = ${person.userId}::uuid`));
    expect(users).toEqual([{ session_version: 0 }]);
    expect((await corrections(person.userId)).map((a) => a.detail)).toEqual([{ fields: ['name'] }]);
  });

  // The races a time cut-off could not close (a login or web sign-in that checked the old password
  // and finishes after the change, clocks that differ): what ends a session is the version it
  // was granted at, never when it was signed or inserted.
  it('P-17 a token signed at the old version is refused even when issued after the change; one at the new version works', async () => {
    const person = await signUp(app, { password: FIRST });
    const changed = await changePassword(person.token, FIRST, SECOND);
    expect(changed.status, changed.text).toBe(200);
    // What a login that verified the old password before the commit signs afterwards: the old
    // version (read with the old hash), stamped a minute after the change.
    const sessions = createSessionTokens(app.config.jwt);
    // The same membership as the signup's session: only the version differs.
    const membership = (await app.services.auth.authenticate(changed.body.token)).session!.membership;
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 60_000);
    const late = sessions.sign({ userId: person.userId, workspaceId: person.workspaceId, sessionVersion: 0, membership });
    const current = sessions.sign({ userId: person.userId, workspaceId: person.workspaceId, sessionVersion: 1, membership });
    vi.useRealTimers();
    const refused = await app.api('GET', '/api/me', { token: late });
    expect([refused.status, refused.body.error.code]).toEqual([401, 'invalid_token']);
    for (const token of [current, changed.body.token, await login(person.email, SECOND)]) expect(await status(token)).toBe(200);
  });

  it('P-17 a web session started from a token checked before the change, inserted after it, is refused', async () => {
    const person = await signUp(app, { password: FIRST });
    const { auth, webSessions } = app.services;
    // The web sign-in's steps (auth.pages.ts): the token is checked, then the change commits, then the row goes in.
    const member = await auth.authenticate(person.token);
    expect((await changePassword(person.token, FIRST, SECOND)).status).toBe(200);
    const late = await webSessions.start({ ...member, sessionVersion: member.session!.version });
    expect(await webSessionCount(person.userId)).toBe(1);
    expect((await webSessions.resolve(late.cookieValue)).state).toBe('ended');
    const current = await webSessions.start({ ...member, sessionVersion: 1 });
    expect((await webSessions.resolve(current.cookieValue)).state).toBe('active');
  });
});
