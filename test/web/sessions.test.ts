import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser, WebClient } from '../helpers/web-client.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const sessionCount = async (userEmail: string) => {
  const result = (await app.database.db.execute(
    sql`select count(*)::int as n from web_sessions s join users u on u.id = s.user_id where u.email = ${userEmail}`,
  )) as unknown as { rows: { n: number }[] };
  return result.rows[0]!.n;
};

describe('web sessions', () => {
  it('the landing page sends a visitor to sign-in and a signed-in user to the app', async () => {
    const visitor = new WebClient(app);
    expect((await visitor.get('/')).location).toBe('/signin');
    const { browser } = await signUpInBrowser(app);
    expect((await browser.get('/')).location).toBe('/app');
    expect((await browser.get('/app')).location).toBe('/app/mailboxes');
  });

  it('sign up takes the mailed code, then signs the browser in with an HttpOnly, SameSite=Lax cookie backed by web_sessions', async () => {
    const browser = new WebClient(app);
    await browser.get('/signup');
    const email = `two-step-${Date.now()}@example.com`;
    const asked = await browser.post('/signup', { email, password: 'a-long-enough-password', workspaceName: 'Acme <b>Ltd</b>' });
    expect(asked.status).toBe(303);
    expect(asked.location).toBe('/signup/verify');
    expect(browser.cookies.has('inboxtrail_session')).toBe(false);

    await browser.get('/signup/verify');
    const wrong = await browser.post('/signup/verify', { code: 'not-the-code' });
    expect(wrong.status).toBe(404);
    expect(wrong.text).toContain('That code is not valid or has expired.');

    const { lastSignupCode } = await import('../../src/auth/account-mail.js');
    const code = lastSignupCode(app.services.accountMailer.outbox ?? [], email)!;
    const done = await browser.post('/signup/verify', { code });
    expect(done.status).toBe(303);
    expect(done.location).toBe('/app/mailboxes?notice=welcome');
    const setCookie = done.headers.getSetCookie().find((c) => c.startsWith('inboxtrail_session='))!;
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Lax/i);
    expect(setCookie).not.toMatch(/Secure/i);
    expect(setCookie).toMatch(/Path=\//);
    expect(await sessionCount(email)).toBe(1);
    // Only the hash is stored: the cookie value appears nowhere in the table.
    const cookieValue = browser.cookies.get('inboxtrail_session')!;
    const stored = (await app.database.db.execute(sql`select token_hash from web_sessions`)) as unknown as { rows: { token_hash: string }[] };
    expect(stored.rows.some((row) => row.token_hash === cookieValue)).toBe(false);
  });

  it('sign in with a wrong password shows the form again with one message and no session', async () => {
    const owner = await signUp(app);
    const browser = new WebClient(app);
    await browser.get('/signin');
    const refused = await browser.post('/signin', { email: owner.email, password: 'wrong-password-here' });
    expect(refused.status).toBe(401);
    expect(refused.text).toContain('Email or password is incorrect');
    expect(browser.cookies.has('inboxtrail_session')).toBe(false);

    const accepted = await browser.post('/signin', { email: owner.email, password: owner.password, next: '/app/contacts' });
    expect(accepted.status).toBe(303);
    expect(accepted.location).toBe('/app/contacts');
    expect(browser.cookies.has('inboxtrail_session')).toBe(true);
  });

  it('an existing account joins on the invitation page with its password; without it (or with a wrong one) the page says what a new address hears: check the mail', async () => {
    const person = await signUp(app);
    const inviter = await signUp(app, { workspaceName: 'Inviting team' });
    const invite = await app.api('POST', '/api/invitations', { token: inviter.token, json: { email: person.email, role: 'member' } });
    const browser = new WebClient(app);
    await browser.get('/invitations/accept');
    for (const password of ['', 'not the password at all']) {
      const asked = await browser.post('/invitations/accept', { token: invite.body.token, password });
      expect([asked.status, asked.location]).toEqual([303, '/signup/verify?invited=1']);
    }
    expect((await browser.get('/signup/verify?invited=1')).text).toContain('If it already has one, the mail tells you how to join');
    const joined = await browser.post('/invitations/accept', { token: invite.body.token, password: person.password });
    expect([joined.status, joined.location]).toEqual([303, '/app?notice=signed_in']);
    expect((await browser.get('/app/account')).text).toContain(`${person.email} · Inviting team`);
  });

  it('a person in two workspaces switches between them from the page frame; a workspace they are not in is a 404', async () => {
    const person = await signUp(app, { workspaceName: 'Home base' });
    const other = await signUp(app, { workspaceName: 'Client team' });
    const stranger = await signUp(app, { workspaceName: 'Not theirs' });
    const invite = await app.api('POST', '/api/invitations', { token: other.token, json: { email: person.email, role: 'member' } });
    expect((await acceptInvitation(app, { token: invite.body.token, password: person.password })).status).toBe(201);

    const browser = new WebClient(app);
    await browser.get('/signin');
    expect((await browser.post('/signin', { email: person.email, password: person.password })).status).toBe(303);
    const home = await browser.get('/app/account');
    expect(home.text).toContain(`${person.email} · Home base`);
    expect(home.text).toContain(`<option value="${other.workspaceId}">Client team</option>`);
    expect(home.text).not.toContain('Not theirs');

    const before = browser.cookies.get('inboxtrail_session');
    const refused = await browser.post('/app/account/workspace', { workspaceId: stranger.workspaceId });
    expect(refused.status).toBe(404);
    expect(browser.cookies.get('inboxtrail_session')).toBe(before);

    await browser.get('/app/account');
    const switched = await browser.post('/app/account/workspace', { workspaceId: other.workspaceId.toUpperCase() });
    expect(switched).toMatchObject({ status: 303, location: '/app?notice=workspace_switched' });
    expect(browser.cookies.get('inboxtrail_session')).not.toBe(before);
    expect(await sessionCount(person.email)).toBe(1);
    const there = await browser.get('/app/account');
    expect(there.text).toContain(`${person.email} · Client team`);
    // The old cookie's session ended with the switch.
    const stale = new WebClient(app);
    stale.cookies.set('inboxtrail_session', before!);
    expect((await stale.get('/app/account')).status).toBe(303);

    // Someone in one workspace sees no switcher.
    expect((await signUpInBrowser(app)).browser.lastPage).not.toContain('Switch workspace');
  });

  it('P-12 someone removed from their only workspace is offered a workspace of their own at sign-in, and lands in it', async () => {
    const owner = await signUp(app);
    const email = `web-removed-${Date.now()}@example.com`;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
    const joined = await acceptInvitation(app, { token: invite.body.token, password: 'member password 123' });
    expect((await app.api('DELETE', `/api/members/${joined.body.user.id}`, { token: owner.token })).status).toBe(204);

    const browser = new WebClient(app);
    await browser.get('/signin');
    const offered = await browser.post('/signin', { email, password: 'member password 123' });
    expect(offered.status).toBe(403);
    expect(offered.text).toContain('not a member of any workspace');
    expect(offered.text).toContain('action="/signin/workspace"');
    expect(browser.cookies.has('inboxtrail_session')).toBe(false);
    const made = await browser.post('/signin/workspace', { email, password: 'member password 123', workspaceName: 'My own' });
    expect(made).toMatchObject({ status: 303, location: '/app?notice=welcome' });
    const home = await browser.get('/app/account');
    expect(home.status).toBe(200);
    expect(home.text).toContain('My own');
  });

  it("a browser that signed in before keeps signing in while a stranger's wrong passwords lock the account for others", async () => {
    const owner = await signUp(app);
    const browser = new WebClient(app);
    await browser.get('/signin');
    const accepted = await browser.post('/signin', { email: owner.email, password: owner.password });
    expect(accepted.status).toBe(303);
    const setCookie = accepted.headers.getSetCookie().find((c) => c.startsWith('inboxtrail_device='))!;
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Lax/i);
    expect(setCookie).toMatch(new RegExp(`Max-Age=${180 * 24 * 3600}`));
    await browser.get('/app/contacts');
    expect((await browser.post('/signout', {})).location).toBe('/signin?signed_out=1');

    const { maxFailures } = app.config.login;
    for (let i = 0; i < maxFailures; i += 1) {
      expect((await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: `stranger ${i}` } })).status).toBe(401);
    }
    const elsewhere = new WebClient(app);
    await elsewhere.get('/signin');
    const refused = await elsewhere.post('/signin', { email: owner.email, password: owner.password });
    expect(refused.status).toBe(429);
    expect(refused.text).toContain('Too many login attempts for this account');

    await browser.get('/signin');
    const again = await browser.post('/signin', { email: owner.email, password: owner.password, next: '/app/contacts' });
    expect([again.status, again.location]).toEqual([303, '/app/contacts']);

    // A browser that signed up is a known device too; a device cookie no token could be is ignored, not a 400.
    const { browser: signedUp, email } = await signUpInBrowser(app);
    expect(signedUp.cookies.has('inboxtrail_device')).toBe(true);
    elsewhere.cookies.set('inboxtrail_device', 'x'.repeat(3000));
    await elsewhere.get('/signin');
    const strange = await elsewhere.post('/signin', { email, password: 'a-long-enough-password' });
    expect(strange.status).toBe(303);
  });

  it('a next= that leaves /app is ignored (no open redirect)', async () => {
    const owner = await signUp(app);
    for (const next of ['https://evil.example/', '//evil.example/app', '/app//evil.example', '/signout']) {
      const browser = new WebClient(app);
      await browser.get('/signin');
      const res = await browser.post('/signin', { email: owner.email, password: owner.password, next });
      expect(res.location).toBe('/app?notice=signed_in');
    }
  });

  it('sign out deletes the session row and clears the cookie; the old cookie no longer opens the app', async () => {
    const { browser, email } = await signUpInBrowser(app);
    const oldCookie = browser.cookies.get('inboxtrail_session')!;
    await browser.get('/app/mailboxes');
    const out = await browser.post('/signout', {});
    expect(out.status).toBe(303);
    expect(out.location).toBe('/signin?signed_out=1');
    expect(browser.cookies.has('inboxtrail_session')).toBe(false);
    expect(await sessionCount(email)).toBe(0);

    const replay = new WebClient(app);
    replay.cookies.set('inboxtrail_session', oldCookie);
    const res = await replay.get('/app/mailboxes');
    expect(res.status).toBe(303);
    expect(res.location).toBe('/signin?expired=1&next=%2Fapp%2Fmailboxes');
  });

  it('an expired session redirects to sign-in with a clear message', async () => {
    const { browser, email } = await signUpInBrowser(app);
    await app.database.db.execute(sql`update web_sessions set expires_at = now() - interval '1 second' where user_id = (select id from users where email = ${email})`);
    const res = await browser.get('/app/contacts?page=2');
    expect(res.status).toBe(303);
    expect(res.location).toBe('/signin?expired=1&next=%2Fapp%2Fcontacts%3Fpage%3D2');
    const signin = await browser.get(res.location!);
    expect(signin.status).toBe(200);
    expect(signin.text).toContain('Your session has expired. Please sign in again.');
  });

  it('a signed-out visitor is redirected from app pages, with no session cookie ever set', async () => {
    const visitor = new WebClient(app);
    const res = await visitor.get('/app/settings');
    expect(res.status).toBe(303);
    expect(res.location).toBe('/signin?next=%2Fapp%2Fsettings');
  });

  it('the session cookie never authenticates the JSON API', async () => {
    const { browser } = await signUpInBrowser(app);
    const res = await browser.request('GET', '/api/me');
    expect(res.status).toBe(401);
  });

  it('a removed membership ends the browser session at once', async () => {
    const { browser, email } = await signUpInBrowser(app);
    await app.database.db.execute(sql`delete from memberships where user_id = (select id from users where email = ${email})`);
    const res = await browser.get('/app/mailboxes');
    expect(res.location).toMatch(/^\/signin\?expired=1/);
  });

  it('a removed member invited back does not get the old browser sessions back (nor those of a member who left)', async () => {
    const person = await signUp(app);
    const owner = await signUp(app, { workspaceName: 'Team that removes' });
    const personId = (await app.api('GET', '/api/me', { token: person.token })).body.user.id as string;
    const join = async () => {
      const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: person.email, role: 'member' } });
      const browser = new WebClient(app);
      await browser.get('/invitations/accept');
      const joined = await browser.post('/invitations/accept', { token: invite.body.token, password: person.password });
      expect([joined.status, joined.location]).toEqual([303, '/app?notice=signed_in']);
      // A copy of that cookie somewhere else (a lost laptop, a stolen cookie) is the same session.
      const copy = new WebClient(app);
      for (const [name, value] of browser.cookies) copy.cookies.set(name, value);
      expect((await copy.get('/app/account')).text).toContain('Team that removes');
      return { browser, copy };
    };

    // An ended session's app page is a 303 to sign-in; a live one, the page (200).
    const signedOutAt = async (browser: WebClient) => {
      const res = await browser.get('/app/mailboxes');
      return `${res.status} ${res.location ?? ''}`;
    };

    const first = await join();
    expect((await app.api('DELETE', `/api/members/${personId}`, { token: owner.token })).status).toBe(204);
    await join();
    expect(await signedOutAt(first.copy)).toMatch(/^303 \/signin\?expired=1/);

    // Leaving from one browser: the person's other browsers in that workspace do not come back either.
    expect((await app.api('DELETE', `/api/members/${personId}`, { token: owner.token })).status).toBe(204);
    const second = await join();
    const teamId = (await app.api('GET', '/api/me', { token: owner.token })).body.workspace.id as string;
    const elsewhere = new WebClient(app);
    await elsewhere.get('/signin');
    await elsewhere.post('/signin', { email: person.email, password: person.password });
    await elsewhere.get('/app/account');
    expect((await elsewhere.post('/app/account/workspace', { workspaceId: teamId })).status).toBe(303);
    expect((await elsewhere.get('/app/account')).text).toContain('Team that removes');
    await second.browser.get('/app/account');
    expect((await second.browser.post('/app/account/leave', { confirm: 'yes' })).status).toBe(200);
    await join();
    expect(await signedOutAt(elsewhere)).toMatch(/^303 \/signin\?expired=1/);
  });

  it('signing in again in a browser (as someone else, or by joining with an invitation) ends the session it had', async () => {
    const first = await signUpInBrowser(app);
    const second = await signUp(app);
    const browser = first.browser;
    // A copy of the first session's cookie (a shared computer's next user, a copied cookie).
    const copy = new WebClient(app);
    for (const [name, value] of browser.cookies) copy.cookies.set(name, value);
    expect((await copy.get('/app/account')).status).toBe(200);

    await browser.get('/app/account');
    const signedIn = await browser.post('/signin', { email: second.email, password: second.password });
    expect(signedIn.status).toBe(303);
    expect((await browser.get('/app/account')).text).toContain(second.email);
    expect(await sessionCount(first.email)).toBe(0);
    expect((await copy.get('/app/account')).status).toBe(303);

    // The invitation page is open to a signed-in browser too: joining starts a session, and ends the one it had.
    const invite = await app.api('POST', '/api/invitations', { token: second.token, json: { email: first.email, role: 'member' } });
    const copyOfSecond = new WebClient(app);
    for (const [name, value] of browser.cookies) copyOfSecond.cookies.set(name, value);
    await browser.get('/invitations/accept');
    const joined = await browser.post('/invitations/accept', { token: invite.body.token, password: first.password });
    expect([joined.status, joined.location]).toEqual([303, '/app?notice=signed_in']);
    expect(await sessionCount(second.email)).toBe(0);
    expect((await copyOfSecond.get('/app/account')).status).toBe(303);
  });

  it('ending every session of a user (account closure) signs out all their browsers', async () => {
    const { browser, email, password } = await signUpInBrowser(app);
    const second = new WebClient(app);
    await second.get('/signin');
    await second.post('/signin', { email, password });
    expect(await sessionCount(email)).toBe(2);
    const userId = ((await app.database.db.execute(sql`select id from users where email = ${email}`)) as unknown as { rows: { id: string }[] }).rows[0]!.id;
    expect(await app.services.webSessions.endAllForUser(userId)).toBe(2);
    expect((await browser.get('/app/mailboxes')).location).toMatch(/^\/signin\?expired=1/);
    expect((await second.get('/app/mailboxes')).location).toMatch(/^\/signin\?expired=1/);
  });
});

describe('secrets stay out of the logs', () => {
  it('no log line carries the session cookie, the CSRF token, the password or the signup code', async () => {
    const { browser, password } = await signUpInBrowser(app);
    await browser.get('/app/settings');
    const secrets = [browser.cookies.get('inboxtrail_session')!, browser.cookies.get('inboxtrail_browser')!, browser.csrfToken(), password];
    await browser.post('/signout', {});
    const logs = app.logs.join('\n');
    expect(logs).toContain('/app/settings');
    for (const secret of secrets) expect(logs).not.toContain(secret);
    const { lastSignupCode } = await import('../../src/auth/account-mail.js');
    for (const mail of app.services.accountMailer.outbox ?? []) {
      const code = lastSignupCode([mail], mail.to);
      if (code) expect(logs).not.toContain(code);
    }
  });
});

describe('cookie flags in production-like settings', () => {
  let secureApp: TestApp;
  beforeAll(async () => {
    secureApp = await startTestApp({ env: { PUBLIC_BASE_URL: 'https://crm.example.com' } });
  });
  afterAll(async () => {
    await secureApp?.close();
  });

  it('with an https public URL the cookies are Secure and __Host- prefixed', async () => {
    const browser = new WebClient(secureApp);
    const page = await browser.get('/signin');
    const browserCookie = page.headers.getSetCookie().find((c) => c.startsWith('__Host-inboxtrail_browser='))!;
    expect(browserCookie).toMatch(/; Secure/i);
    expect(browserCookie).toMatch(/HttpOnly/i);
    const owner = await signUp(secureApp);
    const res = await browser.post('/signin', { email: owner.email, password: owner.password });
    const session = res.headers.getSetCookie().find((c) => c.startsWith('__Host-inboxtrail_session='))!;
    expect(session).toMatch(/; Secure/i);
    expect(session).toMatch(/SameSite=Lax/i);
    expect(session).toMatch(/HttpOnly/i);
  });
});
