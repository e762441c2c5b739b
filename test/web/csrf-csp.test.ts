import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser, WebClient } from '../helpers/web-client.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const count = async (table: 'web_sessions' | 'signup_requests' | 'mailboxes') =>
  ((await app.database.db.execute(sql.raw(`select count(*)::int as n from ${table}`))) as unknown as { rows: { n: number }[] }).rows[0]!.n;

describe('CSRF: a form post without the right token is refused and changes nothing', () => {
  it('sign-in without a token, or with a token of another browser, is a 403 page and starts no session', async () => {
    const owner = await signUp(app);
    const sessionsBefore = await count('web_sessions');
    const attacker = new WebClient(app);
    await attacker.get('/signin');
    const foreignToken = attacker.csrfToken();

    const victim = new WebClient(app);
    await victim.get('/signin');
    for (const csrf of [null, '', foreignToken, 'x'.repeat(43)]) {
      const res = await victim.post('/signin', { email: owner.email, password: owner.password }, { csrf });
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toContain('text/html');
      expect(res.text).toContain('csrf_token_invalid');
      expect(victim.cookies.has('inboxtrail_session')).toBe(false);
    }
    expect(await count('web_sessions')).toBe(sessionsBefore);
  });

  it('sign-up without a token creates no pending signup and sends no mail', async () => {
    const before = await count('signup_requests');
    const mailsBefore = app.services.accountMailer.outbox!.length;
    const browser = new WebClient(app);
    await browser.get('/signup');
    const res = await browser.post('/signup', { email: `nocsrf-${Date.now()}@example.com`, password: 'a-long-enough-password', workspaceName: 'X' }, { csrf: null });
    expect(res.status).toBe(403);
    expect(await count('signup_requests')).toBe(before);
    expect(app.services.accountMailer.outbox!.length).toBe(mailsBefore);
  });

  it('a signed-in form (sign out) needs the token tied to this session: a forged post leaves the session alive', async () => {
    const { browser } = await signUpInBrowser(app);
    await browser.get('/app/mailboxes');
    const sessionsBefore = await count('web_sessions');
    const forged = await browser.post('/signout', {}, { csrf: null });
    expect(forged.status).toBe(403);
    expect(await count('web_sessions')).toBe(sessionsBefore);
    expect((await browser.get('/app/mailboxes')).status).toBe(200);

    // The token of the anonymous sign-in page is not the session's token.
    const anonymous = new WebClient(app);
    anonymous.cookies.set('inboxtrail_browser', browser.cookies.get('inboxtrail_browser')!);
    await anonymous.get('/signin');
    const stale = await browser.post('/signout', {}, { csrf: anonymous.csrfToken() });
    expect(stale.status).toBe(403);
    expect(await count('web_sessions')).toBe(sessionsBefore);
  });

  it('a form posted after the session ended goes to sign-in and changes nothing', async () => {
    const { browser, email } = await signUpInBrowser(app);
    await browser.get('/app/mailboxes');
    const token = browser.csrfToken();
    await app.database.db.execute(sql`delete from web_sessions where user_id = (select id from users where email = ${email})`);
    const res = await browser.post('/app/mailboxes/00000000-0000-4000-8000-000000000000/disconnect', {}, { csrf: token });
    expect(res.status).toBe(303);
    expect(res.location).toBe('/signin?expired=1');
  });
});

describe('strict Content-Security-Policy', () => {
  it('pages allow scripts and styles only as files from our origin, nothing inline', async () => {
    const browser = new WebClient(app);
    for (const path of ['/signin', '/signup', '/invitations/accept']) {
      const res = await browser.get(path);
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self'");
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("object-src 'none'");
      expect(csp).toContain("form-action 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('https:');
      expect(res.text).not.toMatch(/<script(?![^>]*\bsrc=)/i);
      expect(res.text).not.toMatch(/<style|\sstyle=/i);
      expect(res.text).toContain('<link rel="stylesheet" href="/assets/app.css">');
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('the stylesheet is served from our origin as text/css', async () => {
    const res = await new WebClient(app).get('/assets/app.css');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/css');
    expect(res.text).toContain('.topbar');
  });

  it('the recipient pages use the same served stylesheet (no inline style left)', async () => {
    const res = await new WebClient(app).get('/u/not-a-valid-token');
    expect(res.text).not.toMatch(/<style/i);
    expect(res.text).toContain('/assets/app.css');
  });
});
