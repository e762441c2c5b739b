import { describe, expect, it } from 'vitest';
import { snapshotCounts } from '../helpers/test-db.js';
import { startTestApp, useAppWithOwner, type TestApp } from '../helpers/test-app.js';

const ctx = useAppWithOwner();

describe('operational endpoints', () => {
  it('GET /healthz answers without touching anything', async () => {
    const res = await ctx.app.api('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('GET /readyz reports that the database answers', async () => {
    const res = await ctx.app.api('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', database: 'ok' });
  });

  it('GET /metrics exposes request counts and a latency histogram by route pattern', async () => {
    await ctx.app.api('GET', '/api/me', { token: ctx.owner.token });
    const res = await ctx.app.api('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/http_requests_total\{method="GET",route="\/api\/me",status="200"\} \d+/);
    expect(res.text).toContain('http_request_duration_seconds_bucket');
    // Ids never become labels.
    expect(res.text).not.toMatch(/route="[^"]*[0-9a-f]{8}-[0-9a-f]{4}/);
  });

  it('echoes a sane X-Request-Id and replaces a hostile one', async () => {
    const kept = await ctx.app.api('GET', '/healthz', { headers: { 'x-request-id': 'trace-123' } });
    expect(kept.headers.get('x-request-id')).toBe('trace-123');
    const replaced = await ctx.app.api('GET', '/healthz', { headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('sets helmet security headers', async () => {
    const res = await ctx.app.api('GET', '/healthz');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBeTruthy();
    expect(res.headers.get('x-powered-by')).toBeNull();
  });
});

describe('bad input gets a clear 4xx and changes nothing', () => {
  const cases: { name: string; method: string; path: string; init: () => Parameters<TestApp['api']>[2]; status: number; code: string }[] = [
    {
      name: 'malformed JSON',
      method: 'POST',
      path: '/api/contacts',
      init: () => ({ token: ctx.owner.token, body: '{"email": ', headers: { 'content-type': 'application/json' } }),
      status: 400,
      code: 'invalid_json',
    },
    {
      name: 'schema violation',
      method: 'POST',
      path: '/api/contacts',
      init: () => ({ token: ctx.owner.token, json: { email: 'not-an-address', attributes: { '1bad': 'x' } } }),
      status: 400,
      code: 'validation_failed',
    },
    {
      name: 'oversized body',
      method: 'POST',
      path: '/api/contacts',
      init: () => ({ token: ctx.owner.token, json: { email: 'big@example.com', attributes: { blob: 'x'.repeat(2 * 1024 * 1024) } } }),
      status: 413,
      code: 'payload_too_large',
    },
    { name: 'unknown /api route', method: 'GET', path: '/api/does-not-exist', init: () => ({}), status: 404, code: 'route_not_found' },
    { name: 'unknown /api route, POST', method: 'POST', path: '/api/nothing/here', init: () => ({ json: {} }), status: 404, code: 'route_not_found' },
    { name: 'no token', method: 'GET', path: '/api/contacts', init: () => ({}), status: 401, code: 'unauthorized' },
    { name: 'garbage token', method: 'GET', path: '/api/contacts', init: () => ({ token: 'not.a.jwt' }), status: 401, code: 'invalid_token' },
    {
      name: 'CSV import with the wrong content type',
      method: 'POST',
      path: '/api/contacts/import',
      init: () => ({ token: ctx.owner.token, json: { email: 'x@example.com' } }),
      status: 415,
      code: 'unsupported_media_type',
    },
  ];

  it.each(cases)('$name → $status $code', async ({ method, path, init, status, code }) => {
    const before = await snapshotCounts(ctx.app.database.db);
    const res = await ctx.app.api(method, path, init());
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.body.error.code).toBe(code);
    expect(typeof res.body.error.message).toBe('string');
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });

  it('validation errors name each offending field', async () => {
    const res = await ctx.app.api('POST', '/api/auth/signup', { json: { email: 'nope', password: 'short' } });
    expect(res.status).toBe(400);
    const fields = res.body.error.details.map((d: { field: string }) => d.field).sort();
    expect(fields).toEqual(['email', 'password', 'workspaceName']);
  });
});

describe('issue 9: the smaller items', () => {
  it('/metrics is off without METRICS_TOKEN (404) and needs the bearer token with it (401 otherwise)', async () => {
    const off = await startTestApp({ env: { METRICS_TOKEN: '' } });
    try {
      expect((await fetch(`${off.baseUrl}/metrics`)).status).toBe(404);
    } finally {
      await off.close();
    }
    const url = `${ctx.app.baseUrl}/metrics`;
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer wrong-token-of-some-length' } })).status).toBe(401);
    const ok = await fetch(url, { headers: { authorization: `Bearer ${ctx.app.config.metricsToken}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('http_requests_total');
  });

  it('POST /api/messages knows its caller before it reads a body of up to 35 MB: without one, 401 (the body is not parsed)', async () => {
    const res = await ctx.app.api('POST', '/api/messages', { body: `{"to": ["${'x'.repeat(2_000_000)}"`, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
  });

  it('a 400 names at most 20 problems and says how many more: 100,000 bad items made a 15 MB answer', async () => {
    const res = await ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: { name: 'x', contactIds: Array<number>(100_000).fill(0) } });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toHaveLength(21);
    expect(res.body.error.details[20].message).toMatch(/^and \d+ more problems$/);
    expect(res.text.length).toBeLessThan(10_000);
  });

  it('a body nested deeper than 64 levels is a 400 and changes nothing, with or without an Idempotency-Key (it was a 500 with one)', async () => {
    const before = await snapshotCounts(ctx.app.database.db);
    const deep = `{"name":"x","x":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const variants: Record<string, string>[] = [{ 'content-type': 'application/json' }, { 'content-type': 'application/json', 'idempotency-key': 'deep-1' }];
    for (const headers of variants) {
      for (const path of ['/api/campaigns', '/api/messages']) {
        const res = await ctx.app.api('POST', path, { token: ctx.owner.token, body: deep, headers });
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(400);
        expect(res.body.error.code).toBe('validation_failed');
      }
    }
    // 64 levels are still read (and refused by the route's own schema, not by depth).
    const shallow = await ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: { name: 'x', x: JSON.parse(`${'['.repeat(62)}${']'.repeat(62)}`) } });
    expect(shallow.status).toBe(400);
    expect(JSON.stringify(shallow.body)).not.toContain('levels deep');
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });

  it.each(['/u/some-token', '/U/some-token', '/p/some-token'])('%s answers body-parser 413 and 415 as its HTML page', async (path) => {
    const big = await ctx.app.api('POST', path, { body: `List-Unsubscribe=${'x'.repeat(200 * 1024)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(big.status).toBe(413);
    expect(big.headers.get('content-type')).toContain('text/html');
    const json = await ctx.app.api('POST', path, { body: '{"a":', headers: { 'content-type': 'application/json' } });
    expect(json.status).toBe(400);
    expect(json.headers.get('content-type')).toContain('text/html');
    const odd = await ctx.app.api('POST', path, { body: 'x', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=x-no-such-charset' } });
    expect(odd.status).toBe(415);
    expect(odd.headers.get('content-type')).toContain('text/html');
  });
});
