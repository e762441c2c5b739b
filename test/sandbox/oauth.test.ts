import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, SCOPES, authorize, connect, failure, gmailClient, googleReason, oauthClient } from './helpers.js';

let sandbox: Sandbox;

beforeAll(async () => {
  sandbox = await startSandbox({ autoApprove: true, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
});
afterAll(async () => {
  await sandbox.close();
});
beforeEach(() => {
  sandbox.control.reset();
});

describe('authorization code flow (auto-approve)', () => {
  it('redirects with code and state, and the real client exchanges the code for working tokens', async () => {
    const auth = oauthClient(sandbox);
    const url = auth.generateAuthUrl({
      access_type: 'offline',
      prompt: 'consent',
      scope: [SCOPES.send, SCOPES.readonly, 'openid', 'email'],
      login_hint: 'alice@acme.test',
      state: 'signed-state-123',
      include_granted_scopes: true,
    });
    expect(url.startsWith(sandbox.urls.authorize + '?')).toBe(true);

    const params = await authorize(url);
    expect(params.get('state')).toBe('signed-state-123');
    const code = params.get('code');
    expect(code).toBeTruthy();
    expect(params.get('scope')?.split(' ')).toEqual(expect.arrayContaining([SCOPES.send, SCOPES.readonly]));

    const { tokens } = await auth.getToken(code!);
    expect(tokens.access_token).toMatch(/^ya29\./);
    expect(tokens.refresh_token).toBeTruthy();
    expect(tokens.token_type).toBe('Bearer');
    expect(tokens.scope?.split(' ')).toEqual(expect.arrayContaining([SCOPES.send, SCOPES.readonly]));
    expect(tokens.expiry_date).toBeGreaterThan(Date.now() + 3500_000);

    // The id token is signed by the sandbox key and verifies against its certs, as Google's would.
    const ticket = await auth.verifyIdToken({ idToken: tokens.id_token!, audience: CLIENT_ID });
    expect(ticket.getPayload()?.email).toBe('alice@acme.test');

    auth.setCredentials(tokens);
    const profile = await gmailClient(sandbox, auth).users.getProfile({ userId: 'me' });
    expect(profile.data.emailAddress).toBe('alice@acme.test');
    expect(sandbox.control.getMailbox('alice@acme.test')?.kind).toBe('workspace');

    const info = await auth.getTokenInfo(tokens.access_token!);
    expect(info.email).toBe('alice@acme.test');
    expect(info.scopes).toContain(SCOPES.send);
  });

  it('codes are single-use and bound to their redirect_uri', async () => {
    const auth = oauthClient(sandbox);
    const code = (await authorize(auth.generateAuthUrl({ scope: [SCOPES.send], login_hint: 'bob@gmail.com' }))).get('code')!;
    const wrongRedirect = await failure(auth.getToken({ code, redirect_uri: 'http://127.0.0.1:9/elsewhere' }));
    expect(wrongRedirect.status).toBe(400);
    expect(wrongRedirect.message).toBe('redirect_uri_mismatch');

    const { tokens } = await auth.getToken(code);
    expect(tokens.access_token).toBeTruthy();
    // access_type was online: no refresh token.
    expect(tokens.refresh_token).toBeUndefined();
    expect(sandbox.control.getMailbox('bob@gmail.com')?.kind).toBe('consumer');

    const reused = await failure(auth.getToken(code));
    expect(reused.status).toBe(400);
    expect(reused.message).toBe('invalid_grant');
    expect((reused.response?.data as { error_description?: string }).error_description).toMatch(/already redeemed/);
  });

  it('rejects a wrong client secret with invalid_client', async () => {
    const good = oauthClient(sandbox);
    const code = (await authorize(good.generateAuthUrl({ scope: [SCOPES.send], login_hint: 'carol@acme.test' }))).get('code')!;
    const { OAuth2Client } = await import('google-auth-library');
    const bad = new OAuth2Client({ clientId: CLIENT_ID, clientSecret: 'nope', redirectUri: REDIRECT_URI, endpoints: { oauth2TokenUrl: sandbox.urls.token } });
    const error = await failure(bad.getToken(code));
    expect(error.status).toBe(401);
    expect(error.message).toBe('invalid_client');
  });

  it('unions earlier grants with include_granted_scopes, and only hands out a refresh token on first consent', async () => {
    const first = await connect(sandbox, 'dana@acme.test', [SCOPES.send]);
    expect(first.tokens.refresh_token).toBeTruthy();

    const auth = oauthClient(sandbox);
    const code = (
      await authorize(auth.generateAuthUrl({ access_type: 'offline', scope: [SCOPES.readonly], include_granted_scopes: true, login_hint: 'dana@acme.test' }))
    ).get('code')!;
    const { tokens } = await auth.getToken(code);
    expect(tokens.scope?.split(' ').sort()).toEqual([SCOPES.readonly, SCOPES.send].sort());
    // No prompt=consent and a live refresh token exists: Google sends none.
    expect(tokens.refresh_token).toBeUndefined();

    const narrow = oauthClient(sandbox);
    const narrowCode = (await authorize(narrow.generateAuthUrl({ scope: [SCOPES.readonly], login_hint: 'dana@acme.test' }))).get('code')!;
    expect((await narrow.getToken(narrowCode)).tokens.scope).toBe(SCOPES.readonly);
  });
});

describe('refresh, expiry and revocation', () => {
  it('the client refreshes by itself when its access token has expired', async () => {
    const { tokens } = await connect(sandbox, 'erin@acme.test');
    const auth = oauthClient(sandbox);
    auth.setCredentials({ refresh_token: tokens.refresh_token, access_token: tokens.access_token, expiry_date: Date.now() - 1000 });
    const before = sandbox.control.callCounts().token;
    const profile = await gmailClient(sandbox, auth).users.getProfile({ userId: 'me' });
    expect(profile.data.emailAddress).toBe('erin@acme.test');
    expect(sandbox.control.callCounts().token).toBe(before + 1);
    expect(auth.credentials.access_token).not.toBe(tokens.access_token);
  });

  it('a force-expired token is 401 for Gmail; a client with forceRefreshOnFailure recovers', async () => {
    const { api, auth } = await connect(sandbox, 'finn@acme.test', [SCOPES.modify], { forceRefreshOnFailure: true });
    const plain = oauthClient(sandbox);
    plain.setCredentials(auth.credentials);
    expect(sandbox.control.expireAccessTokens('finn@acme.test')).toBe(1);

    const error = await failure(gmailClient(sandbox, plain).users.getProfile({ userId: 'me' }));
    expect(error.status).toBe(401);
    expect(googleReason(error)).toBe('authError');
    expect(error.response?.headers.get('www-authenticate')).toMatch(/invalid_token/);

    const profile = await api.users.getProfile({ userId: 'me' });
    expect(profile.data.emailAddress).toBe('finn@acme.test');
  });

  it('revoke kills the refresh token and its access tokens: invalid_grant and 401', async () => {
    const { auth, api, tokens } = await connect(sandbox, 'gus@acme.test');
    await auth.revokeToken(tokens.refresh_token!);

    const refresh = await failure(auth.refreshAccessToken());
    expect(refresh.message).toBe('invalid_grant');
    expect(refresh.status).toBe(400);
    expect(refresh.response?.data).toEqual({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });

    expect((await failure(api.users.getProfile({ userId: 'me' }))).status).toBe(401);
    const again = await failure(auth.revokeToken(tokens.refresh_token!));
    expect(again.status).toBe(400);
  });

  it('an invalidGrant fault answers invalid_grant and revokes that mailbox grant', async () => {
    const hit = await connect(sandbox, 'hana@acme.test');
    const spared = await connect(sandbox, 'ivan@acme.test');
    sandbox.control.injectFault({ kind: 'invalidGrant', mailbox: 'hana@acme.test' });

    const error = await failure(hit.auth.refreshAccessToken());
    expect(error.message).toBe('invalid_grant');
    // The grant is gone, not just one answer: the next refresh fails on its own.
    expect((await failure(hit.auth.refreshAccessToken())).message).toBe('invalid_grant');
    expect(sandbox.control.getMailbox('hana@acme.test')?.grants).toEqual([]);

    await expect(spared.auth.refreshAccessToken()).resolves.toBeTruthy();
  });

  it('removing access from the account (control) behaves like a revoke', async () => {
    const { auth } = await connect(sandbox, 'jo@acme.test');
    expect(sandbox.control.revokeAccess('jo@acme.test')).toBe(1);
    expect((await failure(auth.refreshAccessToken())).message).toBe('invalid_grant');
  });
});

describe('scopes and userId', () => {
  it('refuses a Gmail call the token has no scope for, and another mailbox as userId', async () => {
    const { api } = await connect(sandbox, 'kim@acme.test', [SCOPES.send]);
    const list = await failure(api.users.messages.list({ userId: 'me' }));
    expect(list.status).toBe(403);
    expect(googleReason(list)).toBe('insufficientPermissions');

    const other = await failure(api.users.getProfile({ userId: 'someone.else@acme.test' }));
    expect(other.status).toBe(403);
    const byEmail = await api.users.getProfile({ userId: 'kim@acme.test' });
    expect(byEmail.data.emailAddress).toBe('kim@acme.test');
  });
});

describe('consent page and per-request decisions', () => {
  it('shows an approval form when not auto-approving; Allow creates the mailbox, Deny is access_denied', async () => {
    const manual = await startSandbox({ clientId: CLIENT_ID });
    try {
      const auth = oauthClient(manual);
      const url = auth.generateAuthUrl({ scope: [SCOPES.send], state: 's1', login_hint: 'new.person@acme.test' });
      const pageResponse = await fetch(url, { redirect: 'manual' });
      expect(pageResponse.status).toBe(200);
      const page = await pageResponse.text();
      expect(page).toContain('<form method="post" action="/o/oauth2/v2/auth/decision">');
      expect(page).toContain('value="new.person@acme.test"');
      const pendingId = /name="request" value="([^"]+)"/.exec(page)?.[1];
      expect(pendingId).toBeTruthy();

      const allow = await fetch(`${manual.url}/o/oauth2/v2/auth/decision`, {
        method: 'POST',
        redirect: 'manual',
        body: new URLSearchParams({ request: pendingId!, email: 'Chosen@Acme.test', kind: 'consumer', decision: 'allow' }),
      });
      expect(allow.status).toBe(302);
      const back = new URL(allow.headers.get('location')!);
      expect(back.origin + back.pathname).toBe(REDIRECT_URI);
      expect(back.searchParams.get('state')).toBe('s1');
      expect(back.searchParams.get('code')).toBeTruthy();
      expect(manual.control.getMailbox('chosen@acme.test')?.kind).toBe('consumer');

      // The pending request is single-use.
      const replay = await fetch(`${manual.url}/o/oauth2/v2/auth/decision`, {
        method: 'POST',
        redirect: 'manual',
        body: new URLSearchParams({ request: pendingId!, email: 'chosen@acme.test', decision: 'allow' }),
      });
      expect(replay.status).toBe(400);

      const second = await (await fetch(auth.generateAuthUrl({ scope: [SCOPES.send], state: 's2' }))).text();
      const deny = await fetch(`${manual.url}/o/oauth2/v2/auth/decision`, {
        method: 'POST',
        redirect: 'manual',
        body: new URLSearchParams({ request: /name="request" value="([^"]+)"/.exec(second)![1]!, decision: 'deny' }),
      });
      const denied = new URL(deny.headers.get('location')!).searchParams;
      expect(denied.get('error')).toBe('access_denied');
      expect(denied.get('state')).toBe('s2');

      manual.control.queueAuthorization({ decision: 'deny' });
      expect((await authorize(auth.generateAuthUrl({ scope: [SCOPES.send], state: 's3' }))).get('error')).toBe('access_denied');
      manual.control.queueAuthorization({ decision: 'allow', email: 'queued@acme.test' });
      const queued = await authorize(auth.generateAuthUrl({ scope: [SCOPES.send] }));
      expect(queued.get('code')).toBeTruthy();
      expect(manual.control.getMailbox('queued@acme.test')).toBeDefined();
    } finally {
      await manual.close();
    }
  });

  it('shows an error page, without redirecting, for an unknown client or a missing scope', async () => {
    const other = oauthClient(sandbox);
    const unknownClient = `${sandbox.urls.authorize}?client_id=nobody&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&response_type=code&scope=email`;
    const response = await fetch(unknownClient, { redirect: 'manual' });
    expect(response.status).toBe(401);
    expect(await response.text()).toContain('invalid_client');

    const noScope = await fetch(other.generateAuthUrl({}), { redirect: 'manual' });
    expect(noScope.status).toBe(400);
    expect(await noScope.text()).toContain('Missing required parameter: scope');
  });
});
