import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gmail } from '@googleapis/gmail';
import { Gaxios, GaxiosError, type GaxiosOptionsPrepared, type GaxiosResponse } from 'gaxios';
import { OAuth2Client } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GmailError, classifyGoogleFailure, parseRetryAfter, toGmailError, type GmailErrorKind } from './gmail-errors.js';

const NOW = Date.parse('2026-01-01T00:00:00Z');

describe('classifyGoogleFailure', () => {
  type Row = {
    status?: number;
    reason?: string;
    oauthError?: string;
    retryAfter?: string | null;
    networkCode?: string;
    kind: GmailErrorKind;
    retryAfterSeconds?: number;
  };
  const rows: Row[] = [
    { status: 429, kind: 'rate_limited' },
    { status: 429, reason: 'rateLimitExceeded', retryAfter: '7', kind: 'rate_limited', retryAfterSeconds: 7 },
    { status: 429, retryAfter: 'Thu, 01 Jan 2026 00:00:30 GMT', kind: 'rate_limited', retryAfterSeconds: 30 },
    { status: 429, retryAfter: 'Wed, 31 Dec 2025 23:00:00 GMT', kind: 'rate_limited', retryAfterSeconds: 0 },
    { status: 429, retryAfter: '999999', kind: 'rate_limited', retryAfterSeconds: 86_400 },
    { status: 429, retryAfter: '-5', kind: 'rate_limited', retryAfterSeconds: 0 },
    { status: 429, retryAfter: '1.2', kind: 'rate_limited', retryAfterSeconds: 2 },
    { status: 429, retryAfter: 'soon', kind: 'rate_limited' },
    { status: 429, retryAfter: null, kind: 'rate_limited' },
    { status: 403, reason: 'rateLimitExceeded', kind: 'rate_limited' },
    { status: 403, reason: 'userRateLimitExceeded', retryAfter: '12', kind: 'rate_limited', retryAfterSeconds: 12 },
    { status: 403, reason: 'quotaExceeded', kind: 'rate_limited' },
    { status: 403, reason: 'dailyLimitExceeded', kind: 'rate_limited', retryAfterSeconds: 3600 },
    { status: 403, reason: 'dailyLimitExceeded', retryAfter: '120', kind: 'rate_limited', retryAfterSeconds: 120 },
    { status: 429, oauthError: 'rate_limit_exceeded', kind: 'rate_limited' },
    { status: 408, kind: 'temporary' },
    { status: 500, reason: 'backendError', kind: 'temporary' },
    { status: 502, kind: 'temporary' },
    { status: 503, reason: 'backendError', retryAfter: '5', kind: 'temporary', retryAfterSeconds: 5 },
    { status: 504, kind: 'temporary' },
    { status: 503, oauthError: 'temporarily_unavailable', kind: 'temporary' },
    { networkCode: 'ECONNRESET', kind: 'temporary' },
    { networkCode: 'ETIMEDOUT', kind: 'temporary' },
    { networkCode: 'ECONNREFUSED', kind: 'temporary' },
    { networkCode: 'EAI_AGAIN', kind: 'temporary' },
    { networkCode: 'ENOTFOUND', kind: 'temporary' },
    { networkCode: 'UND_ERR_SOCKET', kind: 'temporary' },
    { networkCode: 'socket hang up', kind: 'temporary' },
    { networkCode: 'TimeoutError', kind: 'temporary' },
    { status: 401, reason: 'authError', kind: 'auth_revoked' },
    { status: 400, oauthError: 'invalid_grant', kind: 'auth_revoked' },
    { status: 400, oauthError: 'admin_policy_enforced', kind: 'auth_revoked' },
    { status: 400, oauthError: 'unauthorized_client', kind: 'auth_revoked' },
    { status: 401, oauthError: 'invalid_client', kind: 'temporary', retryAfterSeconds: 300 },
    { oauthError: 'invalid_grant', kind: 'auth_revoked' },
    { status: 403, reason: 'insufficientPermissions', kind: 'auth_revoked' },
    { status: 403, reason: 'ACCESS_TOKEN_SCOPE_INSUFFICIENT', kind: 'auth_revoked' },
    { status: 404, reason: 'notFound', kind: 'not_found' },
    { status: 400, reason: 'invalidArgument', kind: 'permanent' },
    { status: 400, reason: 'failedPrecondition', kind: 'permanent' },
    // A malformed token request is ours to fix, as invalid_client: retried later, never a failure for good.
    { status: 400, oauthError: 'invalid_request', kind: 'temporary', retryAfterSeconds: 300 },
    { status: 403, reason: 'forbidden', kind: 'permanent' },
    { status: 403, kind: 'permanent' },
    { status: 409, kind: 'permanent' },
    { status: 413, kind: 'permanent' },
    { status: 501, kind: 'permanent' },
    { networkCode: 'ERR_INVALID_URL', kind: 'permanent' },
    // gaxios's own timeout aborts the fetch: the request may have reached Google (issue #8).
    { networkCode: 'AbortError', kind: 'temporary' },
    { kind: 'permanent' },
  ];

  it.each(rows)('$status $reason $oauthError $networkCode (Retry-After $retryAfter) → $kind $retryAfterSeconds', (row) => {
    const { kind, retryAfterSeconds, ...input } = row;
    expect(classifyGoogleFailure({ ...input, now: NOW })).toEqual(
      retryAfterSeconds === undefined ? { kind } : { kind, retryAfterSeconds },
    );
  });
});

describe('parseRetryAfter', () => {
  it('reads an ISO date as Gmail writes it into its messages', () => {
    expect(parseRetryAfter('2026-01-01T00:01:00.000Z', NOW)).toBe(60);
  });

  it('reads nothing from an empty header', () => {
    expect(parseRetryAfter('', NOW)).toBeUndefined();
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });
});

describe('GmailError', () => {
  it('carries what callers decide on, and its message survives JSON', () => {
    const error = new GmailError('rate_limited', 'Gmail 429 rateLimitExceeded', { status: 429, reason: 'rateLimitExceeded', retryAfterSeconds: 7 });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('GmailError');
    expect(error.retryable).toBe(true);
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      name: 'GmailError',
      kind: 'rate_limited',
      message: 'Gmail 429 rateLimitExceeded',
      status: 429,
      reason: 'rateLimitExceeded',
      retryAfterSeconds: 7,
    });
  });

  it('is returned as is by toGmailError', () => {
    const error = new GmailError('not_found', 'Gmail 404 notFound', { status: 404 });
    expect(toGmailError(error)).toBe(error);
  });
});

// ---------------------------------------------------------------------------
// Real GaxiosErrors, as the Google client throws them.

const SECRET_TOKEN = 'ya29.secret';
const SECRET_REFRESH = '1//0gSecretRefreshTokenValue';
const SECRET_BODY = 'Subject: salary review\r\n\r\nthe raw mail body';

function preparedConfig(): GaxiosOptionsPrepared {
  return {
    method: 'POST',
    url: new URL(`https://gmail.googleapis.com/gmail/v1/users/me/messages/send?access_token=${SECRET_TOKEN}&uploadType=multipart`),
    headers: new Headers({ Authorization: `Bearer ${SECRET_TOKEN}`, 'Content-Type': 'application/json' }),
    data: { raw: Buffer.from(SECRET_BODY).toString('base64url'), refresh_token: SECRET_REFRESH },
    body: SECRET_BODY,
  };
}

/** A fetch Response that has been read, the way gaxios hands it to GaxiosError. */
async function readResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<GaxiosResponse> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const response = new Response(text, { status, headers: { 'content-type': 'application/json', ...headers } });
  const data: unknown = typeof body === 'string' ? body : JSON.parse(await response.text());
  if (typeof body === 'string') await response.text();
  return Object.assign(response, { config: preparedConfig(), data });
}

function gmailBody(code: number, reason: string, message: string, status = 'FAILED_PRECONDITION') {
  return { error: { code, message, status, errors: [{ message, domain: 'global', reason }] } };
}

function expectNoSecrets(error: GmailError) {
  for (const rendered of [error.message, String(error), JSON.stringify(error), error.stack ?? '', JSON.stringify(error.cause ?? null)]) {
    expect(rendered).not.toContain(SECRET_TOKEN);
    expect(rendered).not.toContain(SECRET_REFRESH);
    expect(rendered).not.toContain('salary review');
    expect(rendered).not.toContain(Buffer.from(SECRET_BODY).toString('base64url'));
    expect(rendered).not.toContain('access_token');
    expect(rendered).not.toContain('Bearer');
  }
}

describe('toGmailError on GaxiosError instances', () => {
  it('reads status, reason and a Headers Retry-After from a Gmail 429', async () => {
    const response = await readResponse(
      429,
      gmailBody(429, 'rateLimitExceeded', 'User-rate limit exceeded.', 'RESOURCE_EXHAUSTED'),
      { 'Retry-After': '7' },
    );
    const error = toGmailError(new GaxiosError('User-rate limit exceeded.', preparedConfig(), response));
    expect(error).toMatchObject({ kind: 'rate_limited', status: 429, reason: 'rateLimitExceeded', retryAfterSeconds: 7 });
    expect(error.message).toBe('Gmail 429 rateLimitExceeded');
  });

  it('takes the retry time from the message when Gmail gives no Retry-After header', async () => {
    const retryAt = new Date(Date.now() + 90_000).toISOString();
    const message = `User-rate limit exceeded.  Retry after ${retryAt}`;
    const response = await readResponse(429, gmailBody(429, 'rateLimitExceeded', message, 'RESOURCE_EXHAUSTED'));
    const error = toGmailError(new GaxiosError(message, preparedConfig(), response));
    expect(error.kind).toBe('rate_limited');
    expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(89);
    expect(error.retryAfterSeconds).toBeLessThanOrEqual(90);
  });

  it('treats a 403 userRateLimitExceeded as a rate limit and a 403 insufficientPermissions as a lost grant', async () => {
    const limited = await readResponse(403, gmailBody(403, 'userRateLimitExceeded', 'User Rate Limit Exceeded', 'PERMISSION_DENIED'));
    expect(toGmailError(new GaxiosError('x', preparedConfig(), limited)).kind).toBe('rate_limited');
    const scopes = await readResponse(403, {
      error: {
        code: 403,
        message: 'Request had insufficient authentication scopes.',
        status: 'PERMISSION_DENIED',
        errors: [{ message: 'Insufficient Permission', domain: 'global', reason: 'insufficientPermissions' }],
        details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'ACCESS_TOKEN_SCOPE_INSUFFICIENT' }],
      },
    });
    expect(toGmailError(new GaxiosError('x', preparedConfig(), scopes))).toMatchObject({ kind: 'auth_revoked', reason: 'insufficientPermissions' });
  });

  it('falls back to the canonical status when there is no errors[] item', async () => {
    const response = await readResponse(429, { error: { code: 429, message: 'Quota', status: 'RESOURCE_EXHAUSTED' } });
    expect(toGmailError(new GaxiosError('Quota', preparedConfig(), response))).toMatchObject({ kind: 'rate_limited', reason: 'RESOURCE_EXHAUSTED' });
  });

  it('maps 404 to not_found and 5xx to temporary', async () => {
    const missing = await readResponse(404, gmailBody(404, 'notFound', 'Requested entity was not found.', 'NOT_FOUND'));
    expect(toGmailError(new GaxiosError('x', preparedConfig(), missing))).toMatchObject({ kind: 'not_found', message: 'Gmail 404 notFound' });
    const down = await readResponse(503, gmailBody(503, 'backendError', 'The service is currently unavailable.', 'UNAVAILABLE'));
    expect(toGmailError(new GaxiosError('x', preparedConfig(), down))).toMatchObject({ kind: 'temporary', status: 503 });
  });

  it('reads an OAuth invalid_grant from the token endpoint', async () => {
    const response = await readResponse(400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });
    const error = toGmailError(new GaxiosError('invalid_grant', preparedConfig(), response));
    expect(error).toMatchObject({ kind: 'auth_revoked', status: 400, reason: 'invalid_grant' });
    expect(error.message).toBe('Google OAuth 400 invalid_grant');
  });

  it('reads a text body that was never parsed as JSON', async () => {
    const response = await readResponse(403, JSON.stringify(gmailBody(403, 'dailyLimitExceeded', 'Daily Limit Exceeded')));
    expect(toGmailError(new GaxiosError('x', preparedConfig(), response))).toMatchObject({ kind: 'rate_limited', retryAfterSeconds: 3600 });
  });

  it('finds the socket error under a network failure', () => {
    const socketError = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const fetchFailed = new TypeError('fetch failed', { cause: socketError });
    const error = toGmailError(new GaxiosError('fetch failed', preparedConfig(), undefined, fetchFailed));
    expect(error).toMatchObject({ kind: 'temporary', reason: 'ECONNRESET' });
    expect(error.status).toBeUndefined();
  });

  it('never lets the request URL, headers or body reach the message, String() or JSON', async () => {
    const config = preparedConfig();
    const response = await readResponse(403, gmailBody(403, 'forbidden', 'Delegation denied'));
    // A network failure message from node-fetch repeats the whole URL, query string included.
    const networkMessage = `request to ${config.url.href} failed, reason: socket hang up`;
    const errors = [
      toGmailError(new GaxiosError('Delegation denied', config, response)),
      toGmailError(new GaxiosError(networkMessage, config, undefined, Object.assign(new Error(networkMessage), { code: 'ECONNRESET' }))),
      toGmailError(new GaxiosError(`Bearer ${SECRET_TOKEN} ${SECRET_BODY}`, config)),
    ];
    expect(errors.map((e) => e.kind)).toEqual(['permanent', 'temporary', 'permanent']);
    for (const error of errors) expectNoSecrets(error);
  });

  it('accepts the older plain-object shape (string code, header record)', () => {
    const legacy = {
      message: 'Rate Limit Exceeded',
      code: '429',
      config: { headers: { Authorization: `Bearer ${SECRET_TOKEN}` } },
      response: { status: 429, headers: { 'retry-after': '3' }, data: gmailBody(429, 'rateLimitExceeded', 'Rate Limit Exceeded') },
    };
    const error = toGmailError(legacy);
    expect(error).toMatchObject({ kind: 'rate_limited', status: 429, retryAfterSeconds: 3 });
    expectNoSecrets(error);
  });
});

describe('toGmailError on other failures', () => {
  it('treats a missing refresh token as a lost grant', () => {
    expect(toGmailError(new Error('No refresh token is set.')).kind).toBe('auth_revoked');
  });

  it('keeps an unknown error permanent, with credentials stripped from its message', () => {
    const error = toGmailError(new Error(`boom at https://x.test/a?access_token=${SECRET_TOKEN} with Bearer ${SECRET_TOKEN}`));
    expect(error.kind).toBe('permanent');
    expect(error.message).toContain('boom at https://x.test/a');
    expectNoSecrets(error);
  });

  it('treats a bare socket error as temporary', () => {
    expect(toGmailError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })).kind).toBe('temporary');
    expect(toGmailError(new Error('socket hang up')).kind).toBe('temporary');
  });

  it('handles things that are not errors', () => {
    expect(toGmailError('nope').kind).toBe('permanent');
    expect(toGmailError(undefined).kind).toBe('permanent');
  });
});

// ---------------------------------------------------------------------------
// Over real HTTP: the errors the installed Google clients throw, not hand-built ones.

describe('toGmailError over real HTTP', () => {
  let server: http.Server;
  let baseUrl: string;
  const seenAuthorization: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seenAuthorization.push(req.headers.authorization ?? '');
      req.resume();
      req.on('end', () => {
        if (req.url?.startsWith('/token')) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' }));
        } else if (req.url?.startsWith('/hang-up')) {
          req.socket.destroy();
        } else if (req.url?.startsWith('/slow')) {
          setTimeout(() => res.end('{}'), 1_000).unref();
        } else {
          res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
          res.end(JSON.stringify(gmailBody(429, 'rateLimitExceeded', 'User-rate limit exceeded.', 'RESOURCE_EXHAUSTED')));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  async function caught(promise: Promise<unknown>): Promise<unknown> {
    try {
      await promise;
    } catch (error) {
      return error;
    }
    throw new Error('expected the call to fail');
  }

  it('@googleapis/gmail 429 with Retry-After', async () => {
    const auth = new OAuth2Client();
    auth.setCredentials({ access_token: SECRET_TOKEN, expiry_date: Date.now() + 3_600_000 });
    const client = gmail({ version: 'v1', rootUrl: `${baseUrl}/`, auth, retry: false });
    const thrown = await caught(client.users.getProfile({ userId: 'me' }));
    expect(seenAuthorization).toContain(`Bearer ${SECRET_TOKEN}`);
    const error = toGmailError(thrown);
    expect(error).toMatchObject({ kind: 'rate_limited', status: 429, reason: 'rateLimitExceeded', retryAfterSeconds: 7 });
    expectNoSecrets(error);
  });

  it('google-auth-library refresh answered invalid_grant', async () => {
    const auth = new OAuth2Client({ clientId: 'client', clientSecret: 'client-secret', endpoints: { oauth2TokenUrl: `${baseUrl}/token` } });
    auth.setCredentials({ refresh_token: SECRET_REFRESH });
    const error = toGmailError(await caught(auth.getAccessToken()));
    expect(error).toMatchObject({ kind: 'auth_revoked', reason: 'invalid_grant' });
    expectNoSecrets(error);
  });

  it('gaxios socket hang-up and refused connection', async () => {
    const request = (url: string) =>
      new Gaxios().request({ url, method: 'POST', headers: { Authorization: `Bearer ${SECRET_TOKEN}` }, data: { raw: SECRET_BODY }, retry: false });
    const hangUp = toGmailError(await caught(request(`${baseUrl}/hang-up?access_token=${SECRET_TOKEN}`)));
    expect(hangUp.kind).toBe('temporary');
    expectNoSecrets(hangUp);

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const refused = toGmailError(await caught(request(`http://127.0.0.1:${closedPort}/`)));
    expect(refused).toMatchObject({ kind: 'temporary', reason: 'ECONNREFUSED' });
    expectNoSecrets(refused);
  });

  it('gaxios timeout (reported as an AbortError cause) is temporary, never permanent (issue #8)', async () => {
    const timedOut = toGmailError(
      await caught(new Gaxios().request({ url: `${baseUrl}/slow?access_token=${SECRET_TOKEN}`, headers: { Authorization: `Bearer ${SECRET_TOKEN}` }, timeout: 100, retry: false })),
    );
    expect(timedOut).toMatchObject({ kind: 'temporary', reason: 'AbortError' });
    expectNoSecrets(timedOut);
  });
});

describe('GmailError details', () => {
  it('has no property for a detail it was not given', () => {
    const error = new GmailError('permanent', 'Gmail call failed');
    expect('status' in error || 'reason' in error || 'retryAfterSeconds' in error).toBe(false);
  });
});
