import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { memberInBrowser, signUpInBrowser, WebClient } from '../helpers/web-client.js';

/*
 * The account page (/app/account): name, password, login address with the mailed code, the
 * data export as a download, leaving the workspace, account closure — through the services of PATCH /api/me,
 * POST /api/me/email/verify, GET /api/privacy/export and account closure, on a real socket
 * and database. Every refusal shows on the form with the API's status and changes nothing.
 */

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const ACCOUNT = '/app/account';
const me = async (email: string, password: string) => {
  const login = await app.api('POST', '/api/auth/login', { json: { email, password } });
  return login.status === 200 ? (await app.api('GET', '/api/me', { token: login.body.token })).body.user : { status: login.status };
};
const outbox = () => app.services.accountMailer.outbox!;
const logsSay = (secret: string) => app.logs.some((line) => line.includes(secret));

describe('Account page', () => {
  it('is linked from the navigation and settings, for members too; a member changes their own name', async () => {
    const owner = await signUpInBrowser(app);
    const settings = await owner.browser.get('/app/settings');
    expect(settings.text).toContain('href="/app/account"');
    const member = await memberInBrowser(app, owner.browser);
    const page = await member.get(ACCOUNT);
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<a href="\/app\/account" aria-current="page">Account<\/a>/);
    expect((await member.post('/app/account/profile', { name: 'Mia Member' })).status).toBe(303);
    expect((await member.get(ACCOUNT)).text).toContain('value="Mia Member"');
  });

  it('saves the name (escaped), clears it when emptied; a name too long is a 400 on the form and changes nothing', async () => {
    const person = await signUpInBrowser(app);
    await person.browser.get(ACCOUNT);
    const saved = await person.browser.post('/app/account/profile', { name: 'Ada <b>Lovelace</b>' });
    expect(saved).toMatchObject({ status: 303, location: '/app/account?notice=saved' });
    const page = await person.browser.get(saved.location!);
    expect(page.text).toContain('value="Ada &lt;b&gt;Lovelace&lt;/b&gt;"');
    expect(page.text).toContain('role="status">Saved.');
    expect((await me(person.email, person.password)).name).toBe('Ada <b>Lovelace</b>');

    const tooLong = await person.browser.post('/app/account/profile', { name: 'x'.repeat(201) });
    expect(tooLong.status).toBe(400);
    expect(tooLong.text).toMatch(/role="alert">The request is not valid: name:/);
    expect((await me(person.email, person.password)).name).toBe('Ada <b>Lovelace</b>');

    await person.browser.get(ACCOUNT);
    expect((await person.browser.post('/app/account/profile', { name: '' })).status).toBe(303);
    expect((await me(person.email, person.password)).name).toBeNull();
  });

  it('changes the password with the current one; a wrong current password is a 403 and a bad new one a 400, both changing nothing', async () => {
    const person = await signUpInBrowser(app);
    const newPassword = 'a-brand-new-password-42';
    await person.browser.get(ACCOUNT);

    const wrong = await person.browser.post('/app/account/password', { currentPassword: 'not-my-password', newPassword, repeatPassword: newPassword });
    expect(wrong.status).toBe(403);
    expect(wrong.text).toContain('role="alert">The password does not match this account; nothing was changed');
    const short = await person.browser.post('/app/account/password', { currentPassword: person.password, newPassword: 'short', repeatPassword: 'short' });
    expect(short.status).toBe(400);
    expect(short.text).toMatch(/role="alert">[^<]*newPassword: must be at least 10 characters/);
    const mismatch = await person.browser.post('/app/account/password', { currentPassword: person.password, newPassword, repeatPassword: `${newPassword}x` });
    expect(mismatch.status).toBe(400);
    expect(mismatch.text).toMatch(/role="alert">[^<]*repeatPassword: does not match the new password/);
    expect((await me(person.email, person.password)).email).toBe(person.email);

    const changed = await person.browser.post('/app/account/password', { currentPassword: person.password, newPassword, repeatPassword: newPassword });
    expect(changed).toMatchObject({ status: 303, location: '/app/account?notice=password_changed' });
    expect((await me(person.email, person.password)).status).toBe(401);
    expect((await me(person.email, newPassword)).email).toBe(person.email);
    // The passwords went in POST bodies only: no page, redirect or log line repeats them.
    for (const text of [wrong.text, short.text, mismatch.text, changed.location!]) expect(text).not.toContain(newPassword);
    expect(logsSay(newPassword) || logsSay(person.password)).toBe(false);
  });

  it('a new password signs out every other browser and session token of the person; this browser stays; a wrong current password ends nothing', async () => {
    const person = await signUpInBrowser(app);
    const other = new WebClient(app);
    await other.get('/signin');
    expect((await other.post('/signin', { email: person.email, password: person.password })).status).toBe(303);
    const login = await app.api('POST', '/api/auth/login', { json: { email: person.email, password: person.password } });
    const newPassword = 'a-brand-new-password-43';
    await person.browser.get(ACCOUNT);
    const oldCookie = person.browser.cookies.get('inboxtrail_session')!;

    const wrong = await person.browser.post('/app/account/password', { currentPassword: 'not-my-password', newPassword, repeatPassword: newPassword });
    expect(wrong.status).toBe(403);
    expect((await other.get(ACCOUNT)).status).toBe(200);
    expect((await app.api('GET', '/api/me', { token: login.body.token })).status).toBe(200);

    const changed = await person.browser.post('/app/account/password', { currentPassword: person.password, newPassword, repeatPassword: newPassword });
    expect(changed).toMatchObject({ status: 303, location: '/app/account?notice=password_changed' });
    const page = await person.browser.get(changed.location!);
    expect(page.status).toBe(200);
    expect(page.text).toContain('role="status">Your password was changed. Every other session of yours');
    const signedOut = await other.get(ACCOUNT);
    expect(signedOut.location).toMatch(/^\/signin\?expired=1/);
    expect(other.cookies.has('inboxtrail_session')).toBe(false);
    const refused = await app.api('GET', '/api/me', { token: login.body.token });
    expect([refused.status, refused.body.error.code]).toEqual([401, 'invalid_token']);
    // This browser goes on with a new session (a new cookie value): its forms still work.
    const newCookie = person.browser.cookies.get('inboxtrail_session')!;
    expect(newCookie).toEqual(expect.any(String));
    expect(newCookie).not.toBe(oldCookie);
    expect((await person.browser.post('/app/account/profile', { name: 'Still Here' })).status).toBe(303);
    expect((await person.browser.get(ACCOUNT)).text).toContain('value="Still Here"');
    // The cookie value it had before the change (stolen with the password, say) is refused.
    const thief = new WebClient(app);
    thief.cookies.set('inboxtrail_session', oldCookie);
    expect((await thief.get(ACCOUNT)).location).toMatch(/^\/signin\?expired=1/);
    expect(rowsOf<{ n: number }>(await app.database.db.execute(sql`select count(*)::int as n from web_sessions s join users u on u.id = s.user_id where u.email = ${person.email}`))).toEqual([{ n: 1 }]);
  });

  it('changes the login address once the mailed code comes back; a wrong password or code changes nothing', async () => {
    const person = await signUpInBrowser(app);
    const newEmail = `moved-${Date.now()}@example.com`;
    await person.browser.get(ACCOUNT);

    const wrong = await person.browser.post('/app/account/email', { email: newEmail, currentPassword: 'not-my-password' });
    expect(wrong.status).toBe(403);
    expect(wrong.text).toContain('role="alert">The password does not match this account');
    expect(outbox().some((m) => m.to === newEmail)).toBe(false);
    const invalid = await person.browser.post('/app/account/email', { email: 'not an address', currentPassword: person.password });
    expect(invalid.status).toBe(400);

    // Post/Redirect/Get: the code step is a GET page, so reloading it sends no second code; the
    // redirect names neither the new address nor the code.
    const asked = await person.browser.post('/app/account/email', { email: newEmail, currentPassword: person.password });
    expect(asked).toMatchObject({ status: 303, location: '/app/account?step=email-code#email-code' });
    const codesSent = () => outbox().filter((m) => m.to === newEmail && m.subject.startsWith('Confirm your new')).length;
    expect(codesSent()).toBe(1);
    for (let reload = 0; reload < 2; reload += 1) {
      const step = await person.browser.get(asked.location!);
      expect(step.status).toBe(200);
      expect(step.text).toMatch(/<div id="email-code"><p class="notice" role="status">Check the new address[^<]*<\/p>\s*<form class="stack" method="post" action="\/app\/account\/email\/verify#verify-error">/);
    }
    expect(codesSent()).toBe(1);
    expect((await person.browser.get(ACCOUNT)).text).not.toContain('Check the new address');
    const mail = outbox().findLast((m) => m.to === newEmail && m.subject.startsWith('Confirm your new'))!;
    expect(mail.text).toContain('Account page');
    const code = /code is:\n\n(\S+)/.exec(mail.text)![1]!;
    expect((await me(person.email, person.password)).email).toBe(person.email);

    const badCode = await person.browser.post('/app/account/email/verify', { code: `${code}x` });
    expect(badCode.status).toBe(404);
    expect(badCode.text).toMatch(/role="alert">Email change code not found/);
    expect(badCode.text).not.toContain(code);

    const confirmed = await person.browser.post('/app/account/email/verify', { code });
    expect(confirmed).toMatchObject({ status: 303, location: '/app/account?notice=email_changed' });
    const page = await person.browser.get(confirmed.location!);
    expect(page.text).toContain(`<strong>${newEmail}</strong>`);
    expect(page.text).toContain('Your login address was changed');
    expect(outbox().findLast((m) => m.to === person.email)!.subject).toBe('Your inboxtrail login address was changed');
    expect((await me(newEmail, person.password)).email).toBe(newEmail);
    // Used once: the same code again changes nothing.
    expect((await person.browser.post('/app/account/email/verify', { code })).status).toBe(404);
    expect(logsSay(code)).toBe(false);
    expect(asked.location).not.toContain(code);
  });

  it('shows the code step only while a change of login address is pending: a link to it alone shows neither the notice nor the code form', async () => {
    const person = await signUpInBrowser(app);
    const codeStep = (page: string) => ({ notice: page.includes('Check the new address'), form: page.includes('action="/app/account/email/verify'), anchor: page.includes('id="email-code"') });
    const NOTHING = { notice: false, form: false, anchor: false };
    expect(codeStep((await person.browser.get('/app/account?step=email-code')).text)).toEqual(NOTHING);
    expect(codeStep((await person.browser.get(ACCOUNT)).text)).toEqual(NOTHING);

    // A code typed anyway (a bookmarked form) is refused on the code form, which comes back to say so.
    const stray = await person.browser.post('/app/account/email/verify', { code: 'not-a-code' });
    expect(stray.status).toBe(404);
    expect(codeStep(stray.text)).toEqual({ notice: false, form: true, anchor: true });
    expect(stray.text).toMatch(/role="alert">Email change code not found/);

    const asked = await person.browser.post('/app/account/email', { email: `pending-${Date.now()}@example.com`, currentPassword: person.password });
    expect(asked).toMatchObject({ status: 303, location: '/app/account?step=email-code#email-code' });
    expect(codeStep((await person.browser.get(asked.location!)).text)).toEqual({ notice: true, form: true, anchor: true });
    // Back later, from the mail: the code form, without "we sent".
    expect(codeStep((await person.browser.get(ACCOUNT)).text)).toEqual({ notice: false, form: true, anchor: true });

    // Past the code's 24 hours nothing is pending any more.
    await app.database.db.execute(sql`update users set email_change_requested_at = now() - interval '25 hours' where email = ${person.email}`);
    expect(codeStep((await person.browser.get('/app/account?step=email-code')).text)).toEqual(NOTHING);
    const again = await person.browser.post('/app/account/email', { email: `pending-again-${Date.now()}@example.com`, currentPassword: person.password });
    expect(codeStep((await person.browser.get(again.location!)).text)).toEqual({ notice: true, form: true, anchor: true });
    const code = /code is:\n\n(\S+)/.exec(outbox().findLast((m) => m.subject.startsWith('Confirm your new') && m.to.startsWith('pending-again-'))!.text)![1]!;
    expect((await person.browser.post('/app/account/email/verify', { code })).status).toBe(303);
    // Confirmed: the change is done, and the step's link shows nothing again.
    expect(codeStep((await person.browser.get('/app/account?step=email-code')).text)).toEqual(NOTHING);
  });

  it('each form\'s action names the id of its message: a refused form\'s page opens at it (without JavaScript), a success at the top', async () => {
    const person = await signUpInBrowser(app);
    await person.browser.get(ACCOUNT);
    await person.browser.post('/app/account/email', { email: `anchors-${Date.now()}@example.com`, currentPassword: person.password });
    const page = (await person.browser.get(ACCOUNT)).text;
    const actions = [...page.matchAll(/<form class="stack" method="post" action="([^"]+)">/g)].map((m) => m[1]);
    expect(actions).toEqual([
      '/app/account/profile#profile-error',
      '/app/account/password#password-error',
      '/app/account/email#email-error',
      '/app/account/email/verify#verify-error',
      '/app/account/leave#leave-error',
      '/app/account/close#close-error',
    ]);
    expect(page).not.toMatch(/ id="[^"]*-error"/);
    const refused = {
      profile: await person.browser.post('/app/account/profile', { name: 'x'.repeat(201) }),
      password: await person.browser.post('/app/account/password', { currentPassword: 'wrong-password', newPassword: 'another-long-one', repeatPassword: 'another-long-one' }),
      email: await person.browser.post('/app/account/email', { email: 'not an address', currentPassword: person.password }),
      verify: await person.browser.post('/app/account/email/verify', { code: 'not-a-code' }),
      // The workspace's only owner cannot leave it (409 last_owner).
      leave: await person.browser.post('/app/account/leave', { confirm: 'yes' }),
      close: await person.browser.post('/app/account/close', { password: 'wrong-password' }),
    };
    for (const [form, answer] of Object.entries(refused)) {
      expect(answer.status, form).toBeGreaterThanOrEqual(400);
      expect([...answer.text.matchAll(/<p id="([^"]+)" class="notice error" role="alert">/g)].map((m) => m[1]), form).toEqual([`${form}-error`]);
    }
    // A success redirects without a fragment of its own (the browser keeps the action's, which names nothing there).
    const saved = await person.browser.post('/app/account/profile', { name: 'Ada' });
    expect(saved.location).toBe('/app/account?notice=saved');
    expect((await person.browser.get(saved.location!)).text).not.toMatch(/ id="[^"]*-error"/);
  });

  it('a form posted without the CSRF token is refused (403) and changes nothing', async () => {
    const person = await signUpInBrowser(app);
    await person.browser.get(ACCOUNT);
    const forged = await person.browser.post('/app/account/profile', { name: 'Forged' }, { csrf: null });
    expect(forged.status).toBe(403);
    expect(forged.text).toContain('csrf_token_invalid');
    const forgedPassword = await person.browser.post('/app/account/password', { currentPassword: person.password, newPassword: 'forged-password-123', repeatPassword: 'forged-password-123' }, { csrf: 'wrong' });
    expect(forgedPassword.status).toBe(403);
    expect((await me(person.email, person.password)).name).toBeNull();
  });

  it('P-12 "Download my data" is the JSON export of GET /api/privacy/export as an attachment, never cached', async () => {
    const person = await signUpInBrowser(app);
    expect((await person.browser.get(ACCOUNT)).text).toContain('href="/app/account/export.json" download');
    const download = await person.browser.get('/app/account/export.json');
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(download.headers.get('content-disposition')).toBe('attachment; filename="inboxtrail-export.json"');
    expect(download.headers.get('cache-control')).toBe('no-store');
    const document = JSON.parse(download.text) as { format: string; user: { email: string } };
    expect(document.user.email).toBe(person.email);
    expect(download.text).not.toMatch(/scrypt\$|passwordHash|password_hash/);
    // The same sections, in the same order, as the API's document.
    const login = await app.api('POST', '/api/auth/login', { json: { email: person.email, password: person.password } });
    const api = await app.api('GET', '/api/privacy/export', { token: login.body.token });
    expect(Object.keys(document)).toEqual(Object.keys(JSON.parse(api.text) as object));
    const audited = rowsOf<{ n: number }>(await app.database.db.execute(sql`select count(*)::int as n from audit_log a join users u on u.id::text = a.subject_id::text where a.action = 'privacy.exported' and u.email = ${person.email}`));
    expect(audited).toEqual([{ n: 2 }]);
    // Signed out, the download is not served.
    const anonymous = await fetch(`${app.baseUrl}/app/account/export.json`, { redirect: 'manual' });
    expect(anonymous.status).toBe(303);
  });

  it('the old Settings addresses of the export and of closure redirect to the account page; a closure posted to the old one closes nothing', async () => {
    const person = await signUpInBrowser(app);
    const exported = await person.browser.get('/app/settings/export.json');
    expect(exported).toMatchObject({ status: 308, location: '/app/account/export.json' });
    expect((await person.browser.get(exported.location!)).headers.get('content-disposition')).toBe('attachment; filename="inboxtrail-export.json"');
    expect(await person.browser.get('/app/settings/close-account')).toMatchObject({ status: 308, location: '/app/account#close' });
    expect((await person.browser.get(ACCOUNT)).text).toContain('<h2 id="close">');

    // A tab open on the old form: the right password and token, yet nothing is closed; the person lands on the current form.
    const posted = await person.browser.post('/app/settings/close-account', { password: person.password });
    expect(posted).toMatchObject({ status: 303, location: '/app/account?notice=close_moved' });
    const landed = await person.browser.get(posted.location!);
    expect(landed.status).toBe(200);
    expect(landed.text).toContain('role="status">Closing your account is on this page now, and nothing was closed');
    expect(landed.text).toContain('action="/app/account/close#close-error"');
    expect((await me(person.email, person.password)).email).toBe(person.email);
    // The token rule still comes first, and signed out the old address goes to sign-in (and back through the redirect).
    expect((await person.browser.post('/app/settings/close-account', { password: person.password }, { csrf: null })).status).toBe(403);
    const anonymous = await fetch(`${app.baseUrl}/app/settings/export.json`, { redirect: 'manual' });
    expect([anonymous.status, anonymous.headers.get('location')]).toEqual([303, '/signin?next=%2Fapp%2Fsettings%2Fexport.json']);
  });

  it('a member leaves the workspace from the account page: signed out of it, no longer a member, the account still there', async () => {
    const owner = await signUpInBrowser(app);
    const member = await memberInBrowser(app, owner.browser);
    const page = await member.get(ACCOUNT);
    expect(page.text).toContain('<h2 id="leave">Leave ');
    // Unconfirmed: a 400 on the form, and still a member.
    const unconfirmed = await member.post('/app/account/leave', {});
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.text).toMatch(/id="leave-error" class="notice error" role="alert">The request is not valid: confirm:/);
    expect((await member.get(ACCOUNT)).status).toBe(200);
    const left = await member.post('/app/account/leave', { confirm: 'yes' });
    expect(left.status, left.text).toBe(200);
    expect(left.text).toContain('<h1>You left ');
    const after = await member.get(ACCOUNT);
    expect([after.status, after.location]).toEqual([303, '/signin?next=%2Fapp%2Faccount']);
    // The owner is the workspace's only member again.
    const members = rowsOf<{ n: number }>(await app.database.db.execute(sql`
      select count(*)::int as n from memberships where workspace_id = (select m.workspace_id from memberships m join users u on u.id = m.user_id where u.email = ${owner.email})`));
    expect(members).toEqual([{ n: 1 }]);
  });

  it('closing the account needs the right password; then the session is over', async () => {
    const closing = await signUpInBrowser(app);
    await closing.browser.get(ACCOUNT);
    const wrong = await closing.browser.post('/app/account/close', { password: 'not-the-password' });
    expect(wrong.status).toBe(403);
    expect(wrong.text).toContain('role="alert"');
    expect((await closing.browser.get(ACCOUNT)).status).toBe(200);

    const closed = await closing.browser.post('/app/account/close', { password: closing.password });
    expect(closed.status).toBe(200);
    expect(closed.text).toMatch(/purged on \d{4}-\d{2}-\d{2}/);
    const after = await closing.browser.get(ACCOUNT);
    expect(after.status).toBe(303);
    expect(after.location).toMatch(/^\/signin/);
    expect((await app.api('POST', '/api/auth/login', { json: { email: closing.email, password: closing.password } })).status).toBe(401);
  });

  it('guessing the password on the closure form meets the login throttle: 429 with Retry-After, even for the right password, and nothing is closed', async () => {
    const guarded = await signUpInBrowser(app);
    await guarded.browser.get(ACCOUNT);
    const { maxFailures, windowSeconds } = app.config.login;
    for (let i = 0; i < maxFailures; i += 1) {
      expect((await guarded.browser.post('/app/account/close', { password: `guess ${i}` })).status).toBe(403);
    }
    for (const password of ['one guess too many', guarded.password]) {
      const refused = await guarded.browser.post('/app/account/close', { password });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe(String(windowSeconds));
      expect(refused.text).toMatch(/role="alert">Too many wrong passwords/);
    }
    // The password form counts against the same limit: the right current password is refused too.
    const password = await guarded.browser.post('/app/account/password', { currentPassword: guarded.password, newPassword: 'another-password-99', repeatPassword: 'another-password-99' });
    expect(password.status).toBe(429);
    // Still signed in, the account open.
    expect((await guarded.browser.get(ACCOUNT)).status).toBe(200);
    const users = rowsOf<{ deleted_at: unknown }>(await app.database.db.execute(sql`select deleted_at from users where email = ${guarded.email}`));
    expect(users).toEqual([{ deleted_at: null }]);
  });
});
