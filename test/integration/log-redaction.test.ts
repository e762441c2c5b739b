import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { LOG_LEVEL: 'trace' } });
});
afterAll(async () => {
  await app.close();
});

describe('secrets never reach a log line (invariant 6)', () => {
  it('bearer tokens, cookies, passwords and invitation tokens stay out of the logs, even at trace level', async () => {
    const password = 'Sup3r-Secret-Passphrase!';
    const owner = await signUp(app, { password });
    await app.api('POST', '/api/auth/login', { json: { email: owner.email, password } });
    await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: 'Wrong-But-Still-Secret-42' } });
    await app.api('GET', '/api/me', { token: owner.token, headers: { cookie: 'session=cookie-secret-value' } });
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'invitee@example.com' } });
    await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password: 'Invitee-Secret-Pass-9' } });
    await app.api('POST', '/api/contacts', { token: owner.token, body: '{"broken json', headers: { 'content-type': 'application/json' } });

    const logs = app.logs.join('');
    expect(logs).toContain('"authorization":"[redacted]"');
    expect(logs).toContain('"cookie":"[redacted]"');
    for (const secret of [password, 'Wrong-But-Still-Secret-42', owner.token, 'cookie-secret-value', invite.body.token, 'Invitee-Secret-Pass-9', app.config.jwt.algorithm === 'HS256' ? app.config.jwt.secret : 'x']) {
      expect(logs).not.toContain(secret);
    }
  });

  it('recipient tokens in /u and /p paths and OAuth codes in the callback query stay out of the logs', async () => {
    const token = 'ThisIsARecipientTokenThatMustNotBeLogged123';
    await app.api('GET', `/u/${token}`);
    await app.api('GET', `/p/${token}`);
    await app.api('GET', '/api/gmail/callback?code=4/0SecretOAuthCodeValue&state=SecretStateValue', { headers: { accept: 'application/json' } });
    const logs = app.logs.join('');
    expect(logs).toContain('/u/[token]');
    expect(logs).not.toContain(token);
    expect(logs).not.toContain('SecretOAuthCodeValue');
    expect(logs).not.toContain('SecretStateValue');
  });
});
