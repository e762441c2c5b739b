import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { snapshotCounts } from '../helpers/test-db.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * An attacker's findings at the edge (session 29): bad input gets a 4xx with a stable code that
 * the published document lists, names what was wrong, and changes nothing. Each failed before
 * its fix: a `__proto__` attribute vanished without a word (zod's records skip the key), the
 * body parser's 415s and a gzip body that does not inflate were not in the document (the
 * latter a vague `bad_request`), an unknown query field was called "(body)", and a path nobody
 * serves outside /api got Express's "Cannot PUT /u/…" page with no code.
 */
const ctx = useAppWithOwner({ env: { LOG_LEVEL: 'warn' } });

describe('a `__proto__` attribute is refused, not silently dropped', () => {
  it('POST /api/contacts with attributes.__proto__ of a type no attribute may have → 400, nothing stored', async () => {
    const before = await snapshotCounts(ctx.app.database.db);
    const res = await ctx.app.api('POST', '/api/contacts', {
      token: ctx.owner.token,
      body: '{"email":"proto1@example.com","attributes":{"__proto__":{"nested":["not","a","scalar"]}}}',
      headers: { 'content-type': 'application/json' },
    });
    expect([res.status, res.body?.error?.code]).toEqual([400, 'validation_failed']);
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });

  it('PATCH /api/contacts/:id with attributes.__proto__ → 400, the attributes unchanged', async () => {
    const created = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'proto2@example.com', attributes: { plan: 'pro' } } });
    expect(created.status).toBe(201);
    const res = await ctx.app.api('PATCH', `/api/contacts/${created.body.id}`, {
      token: ctx.owner.token,
      body: '{"attributes":{"__proto__":"gold"}}',
      headers: { 'content-type': 'application/json' },
    });
    expect([res.status, res.body.error.code]).toEqual([400, 'validation_failed']);
    expect(res.body.error.details[0].field).toBe('attributes.__proto__');
    expect((await ctx.app.api('GET', `/api/contacts/${created.body.id}`, { token: ctx.owner.token })).body.attributes).toEqual({ plan: 'pro' });
  });
});

describe('every 4xx a JSON route answers is in its published responses (GET /api/openapi.json)', () => {
  const documented = async (path: string, method: string) => {
    const doc = (await ctx.app.api('GET', '/api/openapi.json')).body;
    return doc.paths[path][method].responses as Record<string, { 'x-error-codes'?: string[] }>;
  };
  it.each([
    ['Content-Encoding the server cannot decode', { 'content-type': 'application/json', 'content-encoding': 'x-unknown' }, '{"email":"enc1@example.com"}'],
    ['JSON in a charset body-parser refuses', { 'content-type': 'application/json; charset=iso-8859-1' }, '{"email":"enc2@example.com"}'],
    ['gzip that is not gzip', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, '{"email":"enc3@example.com"}'],
    ['gzip cut short', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync('{"email":"enc4@example.com"}').subarray(0, 12)],
  ])('POST /api/contacts, %s', async (_name, headers, body) => {
    const res = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, headers, body: body as any });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    const responses = await documented('/api/contacts', 'post');
    expect(Object.keys(responses), `status ${res.status} (${res.body.error.code}) is not documented`).toContain(String(res.status));
    expect(responses[String(res.status)]!['x-error-codes'] ?? []).toContain(res.body.error.code);
  });
});

describe('a refused query names the query field', () => {
  it('GET /api/grants?role=x → the problem names `role`', async () => {
    const res = await ctx.app.api('GET', '/api/grants?role=x', { token: ctx.owner.token });
    expect([res.status, res.body.error.code]).toEqual([400, 'validation_failed']);
    expect(res.body.error.details[0].field).toBe('role');
  });
});

describe('a method or path nobody serves outside /api still answers a stable code', () => {
  it.each([
    ['GET', '/webhooks/gmail'],
    ['POST', '/healthz'],
  ])('%s %s → 404 route_not_found, JSON', async (method, path) => {
    const res = await ctx.app.api(method, path, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.body.error.code).toBe('route_not_found');
  });

  it.each([
    ['PUT', '/u/sometoken'],
    ['DELETE', '/p/sometoken'],
  ])("%s %s → the recipient's 404 page, which does not echo the token", async (method, path) => {
    const res = await ctx.app.api(method, path);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.text).not.toContain('Cannot ');
    expect(res.text).not.toContain('sometoken');
  });
});
