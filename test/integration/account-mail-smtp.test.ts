import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp-server.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Account mail over SMTP (SMTP_URL), through nodemailer to a real socket: a relay that refuses
 * an address, or is busy, turns into a clear 4xx/503 that changed nothing and logged no address.
 */

let smtp: TestSmtpServer;
let app: TestApp;
beforeAll(async () => {
  smtp = await startSmtpServer();
  app = await startTestApp({ env: { SMTP_URL: smtp.url, MAIL_FROM: 'accounts@inboxtrail.test' } });
});
afterAll(async () => {
  await app?.close();
  await smtp?.close();
});

const signupRequests = async (email: string) =>
  Number(((await app.database.db.execute(sql`select count(*)::int as n from signup_requests where email = ${email}`)) as unknown as { rows: { n: number }[] }).rows[0]!.n);
const signup = (email: string) => app.api('POST', '/api/auth/signup', { json: { email, password: 'a-long-enough-password', workspaceName: 'Smtp' } });
/** Quoted-printable, as nodemailer sends text with long lines (a code may be split by soft breaks). */
const unQuote = (data: string) => data.replace(/=\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
/** The code in the newest mail the relay accepted for `to`. */
const codeSentTo = (to: string) => /code is:\s+([A-Za-z0-9_.-]{20,})/.exec(unQuote([...smtp.received].reverse().find((m) => m.to.includes(to))?.data ?? ''))?.[1];

async function signedUp(email: string) {
  expect((await signup(email)).status).toBe(202);
  const verified = await app.api('POST', '/api/auth/signup/verify', { json: { code: codeSentTo(email) } });
  expect(verified.status, verified.text).toBe(201);
  return verified.body.token as string;
}

describe('account mail over SMTP', () => {
  it('signup: a code mailed through the relay creates the account', async () => {
    const token = await signedUp('smtp-ok@example.com');
    expect((await app.api('GET', '/api/me', { token })).body.user.email).toBe('smtp-ok@example.com');
  });

  it('signup to an address the relay refuses (550): 422 email_undeliverable, no pending request, the address in no log line', async () => {
    smtp.refuse.add('smtp-gone@example.com');
    const res = await signup('smtp-gone@example.com');
    expect([res.status, res.body.error.code]).toEqual([422, 'email_undeliverable']);
    expect(await signupRequests('smtp-gone@example.com')).toBe(0);
    expect(app.logs.join('')).not.toContain('smtp-gone');
  });

  // Ours to fix, not the address's: the relay busy (451 at RCPT TO), or refusing our sender (553 at MAIL FROM: configuration).
  for (const [trouble, flag] of [['busy (451)', 'busy'], ['refusing our sender (553)', 'refuseSender']] as const) {
    it(`signup while the relay is ${trouble}: 503 account_mail_unavailable, nothing kept; it works once the relay does`, async () => {
      const email = `smtp-later-${flag.toLowerCase()}@example.com`;
      smtp[flag] = true;
      try {
        const res = await signup(email);
        expect([res.status, res.body.error.code]).toEqual([503, 'account_mail_unavailable']);
        expect(await signupRequests(email)).toBe(0);
      } finally {
        smtp[flag] = false;
      }
      await signedUp(email);
    });
  }

  it('a new login address the relay refuses: 422, and the name changed in the same request is not changed either', async () => {
    const token = await signedUp('smtp-mover@example.com');
    smtp.refuse.add('smtp-dead-end@example.com');
    const res = await app.api('PATCH', '/api/me', { token, json: { name: 'Renamed', email: 'smtp-dead-end@example.com', currentPassword: 'a-long-enough-password' } });
    expect([res.status, res.body.error.code]).toEqual([422, 'email_undeliverable']);
    expect((await app.api('GET', '/api/me', { token })).body.user).toMatchObject({ email: 'smtp-mover@example.com', name: null });
  });

  it('confirming a new address whose old one the relay now refuses: the change is made, the notice is best effort', async () => {
    const token = await signedUp('smtp-old@example.com');
    const asked = await app.api('PATCH', '/api/me', { token, json: { email: 'smtp-new@example.com', currentPassword: 'a-long-enough-password' } });
    expect(asked.status, asked.text).toBe(200);
    smtp.refuse.add('smtp-old@example.com');
    const confirmed = await app.api('POST', '/api/me/email/verify', { token, json: { code: codeSentTo('smtp-new@example.com') } });
    expect(confirmed.status, confirmed.text).toBe(200);
    expect(confirmed.body.user.email).toBe('smtp-new@example.com');
  });
});
