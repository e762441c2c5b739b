import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

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
    await acceptInvitation(app, { token: invite.body.token, password: 'Invitee-Secret-Pass-9' });
    await app.api('POST', '/api/contacts', { token: owner.token, body: '{"broken json', headers: { 'content-type': 'application/json' } });

    const logs = app.logs.join('');
    expect(logs).toContain('"authorization":"[redacted]"');
    expect(logs).toContain('"cookie":"[redacted]"');
    for (const secret of [password, 'Wrong-But-Still-Secret-42', owner.token, 'cookie-secret-value', invite.body.token, 'Invitee-Secret-Pass-9', app.config.jwt.algorithm === 'HS256' ? app.config.jwt.secret : 'x']) {
      expect(logs).not.toContain(secret);
    }
  });

  it('API keys stay out of the logs: at creation, in use, refused, revoked, and malformed', async () => {
    const owner = await signUp(app);
    const created = await app.api('POST', '/api/api-keys', { token: owner.token, json: { name: 'server', scopes: ['read'] } });
    const key: string = created.body.key;
    expect(key).toMatch(/^itk_/);
    await app.api('GET', '/api/me', { token: key });
    await app.api('POST', '/api/contacts', { token: key, json: { email: 'scoped@example.com' } });
    await app.api('GET', '/api/me', { headers: { authorization: `Bearer ${key}x` } });
    await app.api('DELETE', `/api/api-keys/${created.body.id}`, { token: owner.token });
    await app.api('GET', '/api/me', { token: key });
    const logs = app.logs.join('');
    // The refused requests were logged (so the check below looked at their lines).
    expect(logs).toContain('"statusCode":401');
    // Neither the key nor its secret part (past the public prefix shown in lists).
    expect(logs).not.toContain(key.slice(created.body.prefix.length));
  });

  it('recipient tokens in /u and /p paths and OAuth codes in the callback query stay out of the logs', async () => {
    const token = 'ThisIsARecipientTokenThatMustNotBeLogged123';
    await app.api('GET', `/u/${token}`);
    await app.api('GET', `/p/${token}`);
    // The mailed confirmation's signed token: dotted, so the rule for long opaque segments alone stopped at its first dot.
    const signed = 'eyJhbGciOiJIUzI1NiJ9.eyJyZWNpcGllbnQiOiJ4In0.SignedConfirmationSignature';
    await app.api('GET', `/p/confirm/${signed}`);
    await app.api('GET', '/api/gmail/callback?code=4/0SecretOAuthCodeValue&state=SecretStateValue', { headers: { accept: 'application/json' } });
    const logs = app.logs.join('');
    expect(logs).toContain('/u/[token]');
    expect(logs).not.toContain(token);
    expect(logs).toContain('/p/confirm/[token]');
    expect(logs).not.toContain('SignedConfirmationSignature');
    expect(logs).not.toContain('eyJyZWNpcGllbnQiOiJ4In0');
    expect(logs).not.toContain('SecretOAuthCodeValue');
    expect(logs).not.toContain('SecretStateValue');
  });
});

describe('issue 9: the worst cases of the hostile run leave nothing secret in the logs', () => {
  it('every former 500 path (NUL, lone surrogate, forged cursor, impossible date) is a 4xx and the logs hold none of what was sent', async () => {
    const owner = await signUp(app, { password: 'Owner-Secret-Pass-77' });
    const sent = {
      password: 'Hostile-Password-Value-1',
      acceptPassword: 'Accept-Password-Value-2',
      body: 'CAMPAIGN-BODY-SECRET-3',
      subject: 'ONE-TO-ONE-SUBJECT-SECRET-4',
      address: 'private.person.5@secret.example',
      note: 'SUPPRESSION-NOTE-SECRET-6',
    };
    const NUL = '\u0000';
    const calls: [string, string, unknown, string?][] = [
      ['POST', '/api/auth/login', { email: `${sent.address}${NUL}`, password: sent.password }],
      ['POST', '/api/auth/signup', { email: sent.address, password: sent.password, workspaceName: `W${NUL}` }],
      ['POST', '/api/invitations/accept', { token: `t${NUL}`, password: sent.acceptPassword }],
      ['PATCH', '/api/workspace', { name: `N${NUL}` }, owner.token],
      ['POST', '/api/contacts', { email: sent.address, firstName: `F${NUL}`, attributes: { note: sent.note } }, owner.token],
      ['POST', '/api/campaigns', { name: `C${NUL}`, kind: 'marketing', mailboxId: owner.workspaceId, subject: sent.subject, html: `${sent.body}${NUL}`, contactIds: [owner.userId] }, owner.token],
      ['POST', '/api/messages', { mailboxId: owner.workspaceId, to: sent.address, subject: `${sent.subject}${NUL}`, text: sent.body }, owner.token],
      ['POST', '/api/suppressions', { email: sent.address, note: `${sent.note}\udfff` }, owner.token],
      ['POST', `/api/contacts/${owner.userId}/consents`, { status: 'opted_in', source: `S${NUL}` }, owner.token],
    ];
    for (const [method, path, json, token] of calls) {
      const res = await app.api(method, path, { json, token });
      expect(res.status, path).toBe(400);
      expect(res.body.error.code, path).toBe('invalid_text');
    }
    const cursor = Buffer.from(`+275760-09-13T00:00:00.000Z|${'-'.repeat(36)}`).toString('base64url');
    expect((await app.api('GET', `/api/contacts?cursor=${cursor}`, { token: owner.token })).status).toBe(400);
    expect((await app.api('GET', '/api/contacts?q=%00', { token: owner.token })).status).toBe(400);
    const csv = await app.api('POST', '/api/contacts/import', { token: owner.token, body: `email,x\n${sent.address},${sent.note}\u0000\n`, headers: { 'content-type': 'text/csv' } });
    expect(csv.status).toBe(200);

    const logs = app.logs.join('');
    for (const secret of [...Object.values(sent), 'Owner-Secret-Pass-77', owner.token, 'scrypt$']) expect(logs).not.toContain(secret);
    const leaks = logs.split("\n").filter((line) => /Failed query|params: |"level":50/.test(line));
    expect(leaks).toEqual([]);
  });

  it("an address or token carried encoded in sign-in's next, in the request or in the redirect's Location, stays out of the logs", async () => {
    const token = 'YetAnotherRecipientTokenValue0123456789ab';
    // Signed out: each page redirects to /signin?next=<the page, encoded>.
    await app.api('GET', '/app/suppressions?email=next-leak-1%40example.org');
    await app.api('GET', `/signin?next=${encodeURIComponent('/app/suppressions?email=next-leak-2%40example.org')}`);
    await app.api('GET', `/signin?next=${encodeURIComponent(encodeURIComponent('/app/suppressions?email=next-leak-3%40example.org'))}`);
    await app.api('GET', `/app/../u/${token}`);
    await app.api('GET', `/signin?next=${encodeURIComponent(`/app/x/${token}`)}`);
    // The reconnect link names its mailbox; a search names a contact; any other parameter holding an address.
    await app.api('GET', '/app/mailboxes/connect?sync=true&loginHint=next-leak-4%40example.org');
    await app.api('GET', `/signin?next=${encodeURIComponent('/app/mailboxes/connect?loginHint=next-leak-5%40example.org')}`);
    await app.api('GET', '/app/contacts?q=next-leak-6+Lovelace');
    await app.api('GET', '/api/contacts?other=next-leak-7@example.org');
    const logs = app.logs.join('');
    expect(logs).toContain('"location":"/signin?next=');
    // A request's line carries its answer's status and Location, not the headers every answer has.
    const answered = app.logs.filter((line) => line.includes('"res":'));
    expect(answered.length).toBeGreaterThan(0);
    for (const line of answered) {
      const { res } = JSON.parse(line) as { res: { statusCode: number; headers?: Record<string, string> } };
      expect(typeof res.statusCode).toBe('number');
      expect(Object.keys(res.headers ?? {}).filter((name) => name !== 'location')).toEqual([]);
    }
    expect(logs).not.toContain('content-security-policy');
    for (const secret of ['next-leak-1', 'next-leak-2', 'next-leak-3', 'next-leak-4', 'next-leak-5', 'next-leak-6', 'next-leak-7', token]) expect([secret, logs.includes(secret)]).toEqual([secret, false]);
  });

  it('token paths are redacted whatever their case or doubled slashes', async () => {
    const token = 'AnotherRecipientTokenValue0123456789abcdef';
    for (const path of [`/U/${token}`, `/P/${token}`, `//t/c/${token}`, `/T/c/${token}`, `/T/O/${token}.gif`, `//u//${token}`]) await app.api('GET', path);
    const logs = app.logs.join('');
    expect(logs).not.toContain(token);
    expect(logs).toContain('/U/[token]');
  });
  it('a Referer (the page before: a search, an address filter, a token path) is redacted like the request URL', async () => {
    const token = 'RefererRecipientTokenValue0123456789abcdef';
    const referers = [
      `${app.baseUrl}/app/contacts?q=ref-leak-1%40example.org`,
      `${app.baseUrl}/app/suppressions?email=ref-leak-2@example.org`,
      `${app.baseUrl}/signin?next=${encodeURIComponent('/app/contacts?q=ref-leak-3')}`,
      `${app.baseUrl}/u/${token}`,
    ];
    for (const referer of referers) await app.api('GET', '/assets/app.css', { headers: { referer } });
    const logs = app.logs.join('');
    expect(logs).toContain('"referer":"http://');
    for (const secret of ['ref-leak-1', 'ref-leak-2', 'ref-leak-3', token]) expect([secret, logs.includes(secret)]).toEqual([secret, false]);
  });
  it('what the attacker found past the rules: a user and password in a URL, an encoded or array search key, an address in a path or a non-URL header, proxy credentials', async () => {
    await app.api('GET', '/assets/app.css', { headers: { referer: 'https://user:hunter2pass@elsewhere.example/x?y=1' } });
    await app.api('GET', '/assets/app.css', { headers: { origin: 'https://u:originpass@elsewhere.example' } });
    await app.api('GET', '/api/contacts?%71=encoded-key-leak');
    await app.api('GET', '/api/contacts?q[]=array-key-leak');
    await app.api('GET', '/app/contacts/path-leak@example.org');
    await app.api('GET', '/assets/app.css', { headers: { referer: 'mailto:mailto-leak@example.org' } });
    await app.api('GET', '/assets/app.css', { headers: { referer: `${app.baseUrl}/x?password=PwLeak9#q=fragment-leak` } });
    await app.api('GET', '/healthz2', { headers: { 'proxy-authorization': 'Basic cHJveHktbGVhaw==', 'x-api-key': 'header-key-leak' } });
    const logs = app.logs.join('');
    for (const secret of ['hunter2pass', 'originpass', 'encoded-key-leak', 'array-key-leak', 'path-leak', 'mailto-leak', 'PwLeak9', 'fragment-leak', 'cHJveHktbGVhaw', 'header-key-leak']) {
      expect([secret, logs.includes(secret)]).toEqual([secret, false]);
    }
    expect(logs).toContain('https://[redacted]@elsewhere.example/x?y=1');
  });

  it("a second attacker's findings: an address in User-Agent or X-Forwarded-For, a custom credential header, a credential-named query key", async () => {
    await app.api('GET', '/healthz2', { headers: { 'user-agent': 'ua-leak@x.org', 'x-forwarded-for': 'xff-leak@x.org', 'x-auth-token': 'custom-header-leak' } });
    await app.api('GET', '/healthz2?deviceToken=device-query-leak&api_key=apikey-query-leak&client_secret=secret-query-leak&page=2');
    const logs = app.logs.join('');
    for (const secret of ['ua-leak', 'xff-leak', 'custom-header-leak', 'device-query-leak', 'apikey-query-leak', 'secret-query-leak']) {
      expect([secret, logs.includes(secret)]).toEqual([secret, false]);
    }
    // What is not a credential or an address stays readable.
    expect(logs).toContain('page=2');
    expect(logs).toMatch(/"user-agent":"\[redacted\]"/);
  });

  it("a third attacker's finding: an API key in a query key no rule named (key=, access_key=, x=) is redacted by its shape", async () => {
    const owner = await signUp(app);
    const created = await app.api('POST', '/api/api-keys', { token: owner.token, json: { name: 'in a url', scopes: ['read'] } });
    const key: string = created.body.key;
    const secretPart = key.slice(created.body.prefix.length);
    for (const name of ['key', 'access_key', 'x']) await app.api('GET', `/api/contacts?${name}=${key}&limit=5`, { token: key });
    await app.api('GET', `/healthz2?opaque=${'Q'.repeat(20)}${secretPart}&oauthish=4/0AfJohXl${'b'.repeat(30)}&b64=${'c'.repeat(30)}%2B%2F%3D`);
    const logs = app.logs.join('');
    expect(logs).toContain('limit=5');
    expect(logs).toContain('x=[redacted]');
    expect(logs).not.toContain(secretPart);
    expect(logs).not.toContain('b'.repeat(30));
    expect(logs).not.toContain('c'.repeat(30));
  });
});
