import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { CLIENT_ID, SCOPES, base64url, composeRaw, connect, failure, googleReason, type Connection } from './helpers.js';

let sandbox: Sandbox;
let alice: Connection;

beforeAll(async () => {
  sandbox = await startSandbox({ autoApprove: true, clientId: CLIENT_ID });
});
afterAll(async () => {
  await sandbox.close();
});
beforeEach(async () => {
  sandbox.control.reset();
  alice = await connect(sandbox, 'alice@acme.test', [SCOPES.send, SCOPES.modify]);
});

async function send(connection: Connection, messageId: string) {
  const raw = await composeRaw({ from: 'alice@acme.test', to: 'someone@elsewhere.test', subject: 'hi', text: 'hello', messageId });
  return connection.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(raw) } });
}

describe('fault injection', () => {
  it('429 with Retry-After reaches the caller of messages.send (POST is not retried by the client)', async () => {
    sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'send', retryAfterSeconds: 7 });
    const error = await failure(send(alice, '<rl-1@inboxtrail.test>'));
    expect(error.status).toBe(429);
    expect(error.response?.headers.get('retry-after')).toBe('7');
    expect(googleReason(error)).toBe('rateLimitExceeded');
    expect((error.response?.data as { error: { status: string; errors: { domain: string }[] } }).error).toMatchObject({
      code: 429,
      status: 'RESOURCE_EXHAUSTED',
      errors: [{ domain: 'usageLimits' }],
    });

    // The fault was used up: the retry goes through, and exactly one send succeeded.
    await send(alice, '<rl-1@inboxtrail.test>');
    expect(sandbox.control.callCounts().send).toBe(2);
    expect(sandbox.control.callCounts({ successfulOnly: true }).send).toBe(1);
    expect(sandbox.control.listMessages('alice@acme.test', { labelId: 'SENT' })).toHaveLength(1);
    expect(sandbox.control.calls({ endpoint: 'send' }).map((c) => [c.status, c.faulted])).toEqual([
      [429, true],
      [200, false],
    ]);
  });

  it('GETs are retried by the client on 429/5xx unless retry is off', async () => {
    sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'list', retryAfterSeconds: 1 });
    const retried = await alice.api.users.messages.list({ userId: 'me' });
    expect(retried.status).toBe(200);
    expect(sandbox.control.callCounts().list).toBe(2);

    sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'list', retryAfterSeconds: 3 });
    const error = await failure(alice.api.users.messages.list({ userId: 'me' }, { retry: false }));
    expect(error.status).toBe(429);
    expect(error.response?.headers.get('retry-after')).toBe('3');
  });

  it('403 userRateLimitExceeded, 500 and 503 backendError in Google shape', async () => {
    sandbox.control.injectFault({ kind: 'userRateLimit', endpoint: 'profile' });
    const userRate = await failure(alice.api.users.getProfile({ userId: 'me' }));
    expect(userRate.status).toBe(403);
    expect(googleReason(userRate)).toBe('userRateLimitExceeded');

    sandbox.control.injectFault({ kind: 'backendError', endpoint: 'get', times: 'always' });
    const e500 = await failure(alice.api.users.messages.get({ userId: 'me', id: '0123456789abcdef' }, { retry: false }));
    expect(e500.status).toBe(500);
    expect(googleReason(e500)).toBe('backendError');
    sandbox.control.clearFaults();

    sandbox.control.injectFault({ kind: 'backendError', status: 503, endpoint: 'history', times: 2 });
    const e503 = await failure(alice.api.users.history.list({ userId: 'me', startHistoryId: '1' }, { retry: false }));
    expect(e503.status).toBe(503);
    expect((e503.response?.data as { error: { status: string } }).error.status).toBe('UNAVAILABLE');
    expect(sandbox.control.listFaults()).toHaveLength(1);
    expect(sandbox.control.listFaults()[0]).toMatchObject({ remaining: 1, hits: 1 });
  });

  it('targets one mailbox and leaves the others alone; latency delays without failing', async () => {
    const bob = await connect(sandbox, 'bob@acme.test', [SCOPES.send]);
    sandbox.control.injectFault({ kind: 'backendError', mailbox: 'bob@acme.test', endpoint: 'send', times: 'always' });
    await send(alice, '<a-ok@inboxtrail.test>');
    expect((await failure(send(bob, '<b-fails@inboxtrail.test>'))).status).toBe(500);
    sandbox.control.clearFaults();

    sandbox.control.injectFault({ kind: 'latency', ms: 250, endpoint: 'profile' });
    const started = performance.now();
    await alice.api.users.getProfile({ userId: 'me' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(240);
    expect(sandbox.control.listFaults()).toHaveLength(0);
  });

  it('a custom googleError fault, and the faults route over HTTP', async () => {
    const created = await fetch(`${sandbox.urls.control}/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'googleError', status: 400, reason: 'failedPrecondition', message: 'Mail service not enabled', endpoint: 'send' }),
    });
    expect(created.status).toBe(201);
    const error = await failure(send(alice, '<custom@inboxtrail.test>'));
    expect(error.status).toBe(400);
    expect(googleReason(error)).toBe('failedPrecondition');
    expect(error.message).toBe('Mail service not enabled');

    const bad = await fetch(`${sandbox.urls.control}/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'explode' }) });
    expect(bad.status).toBe(400);
    const calls = (await (await fetch(`${sandbox.urls.control}/calls?mailbox=alice@acme.test`)).json()) as { counts: Record<string, number> };
    expect(calls.counts['send']).toBe(1);
  });

  it('token endpoint faults speak OAuth; OAuth2Client retries token POSTs on 5xx by itself', async () => {
    sandbox.control.injectFault({ kind: 'backendError', status: 503, endpoint: 'token', mailbox: 'alice@acme.test' });
    const before = sandbox.control.callCounts().token;
    await alice.auth.refreshAccessToken();
    expect(sandbox.control.callCounts().token).toBe(before + 2);

    sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'token', retryAfterSeconds: 2 });
    const response = await fetch(sandbox.urls.token, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: alice.tokens.refresh_token!, client_id: CLIENT_ID }),
    });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('2');
    expect(await response.json()).toMatchObject({ error: 'rate_limit_exceeded' });
  });
});
