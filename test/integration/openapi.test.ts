import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { API_ROUTES } from '../../src/http/api-routes.js';
import { ERROR_STATUS } from '../../src/http/api-spec.js';
import { WEB_PATHS } from '../../src/web/web.routes.js';
import { registeredRoutes } from '../helpers/routes.js';
import { useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();

const documented = (doc: { paths: Record<string, Record<string, unknown>> }) =>
  new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`)));

describe('OpenAPI 3.1 document', () => {
  it('is served at /api/openapi.json without a token and validates as OpenAPI 3.1', async () => {
    const res = await ctx.app.api('GET', '/api/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const validator = new Validator();
    const result = await validator.validate(res.body);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('lists every route the Express app registers (a route without a schema fails here)', async () => {
    const doc = (await ctx.app.api('GET', '/api/openapi.json')).body;
    const paths = documented(doc);
    // The web app's HTML pages and their static assets are for browsers, not API clients (src/web/README.md).
    const isWebPage = (path: string) => path === '/' || path.startsWith('/assets/') || WEB_PATHS.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
    const missing = registeredRoutes(ctx.app.express)
      .filter((r) => !isWebPage(r.path))
      .map((r) => `${r.method} ${r.path}`)
      .filter((r) => !paths.has(r));
    expect(missing).toEqual([]);
    // The tracking URLs are answered before Express (app.ts createHttpServer), and documented too.
    expect(paths.has('GET /t/o/:token')).toBe(true);
  });

  it('request bodies and queries are the zod schemas that validate them, error codes are listed per route', async () => {
    const doc = (await ctx.app.api('GET', '/api/openapi.json')).body;
    const send = doc.paths['/api/messages'].post;
    const body = send.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(expect.arrayContaining(['mailboxId', 'to', 'subject']));
    expect(body.additionalProperties).toBe(false);
    expect(send.parameters.map((p: { name: string }) => p.name)).toContain('Idempotency-Key');
    expect(send.responses['409']['x-error-codes']).toEqual(expect.arrayContaining(['recipient_suppressed', 'idempotency_in_progress']));
    // Demoting or removing the workspace's last owner is 409 last_owner (auth.service.ts checkedTarget), as leaving is.
    for (const method of ['patch', 'delete']) expect(doc.paths['/api/members/{id}'][method].responses['409']?.['x-error-codes'], method).toContain('last_owner');
    expect(send.security).toEqual([{ session: [] }, { apiKey: ['send'] }]);
    const list = doc.paths['/api/contacts'].get.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`);
    expect(list).toEqual(expect.arrayContaining(['query:limit', 'query:cursor', 'query:q']));
    expect(doc.paths['/api/contacts/import'].post.requestBody.content['text/csv']).toBeDefined();
    // Every code a route names has a status, and the Error schema lists them all.
    for (const r of API_ROUTES) for (const code of r.errors ?? []) expect(ERROR_STATUS[code], code).toBeDefined();
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toContain('api_key_scope_missing');
  });

  it('JSON answers carry output schemas, shared ones as components, and every $ref resolves', async () => {
    const doc = (await ctx.app.api('GET', '/api/openapi.json')).body;
    const detail = doc.paths['/api/contacts/{id}'].get.responses['200'].content['application/json'].schema;
    expect(detail.required).toEqual(expect.arrayContaining(['id', 'email', 'consent', 'timeline', 'campaignMail']));
    expect(detail.additionalProperties).toBe(false);
    expect(doc.paths['/api/contacts'].post.responses['201'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Contact' });
    expect(doc.components.schemas.Contact.additionalProperties).toBe(false);
    // Files and pages keep their own content type, with no JSON schema.
    expect(Object.keys(doc.paths['/api/campaigns/{id}/results.csv'].get.responses['200'].content)).toEqual(['text/csv']);
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(20);
    expect(refs.filter((name) => !doc.components.schemas[name])).toEqual([]);
  });

  it('every error code the code can throw is in the document, with the status it is thrown with', () => {
    const sources = readdirSync('src', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.startsWith('sandbox'))
      .map((f) => readFileSync(path.join('src', f), 'utf8'))
      .join('\n');
    const thrown = new Map<string, number | undefined>();
    for (const m of sources.matchAll(/new (ConflictError|UnprocessableError|UnauthorizedError|AppError)\(\s*'([a-z_]+)'(?:,\s*(\d{3}))?/g)) {
      const status = m[1] === 'ConflictError' ? 409 : m[1] === 'UnprocessableError' ? 422 : m[1] === 'UnauthorizedError' ? 401 : m[3] ? Number(m[3]) : undefined;
      thrown.set(m[2]!, status);
    }
    for (const m of sources.matchAll(/new NotFoundError\([^)]*, '([a-z_]+)'\)/g)) thrown.set(m[1]!, 404);
    expect(thrown.size).toBeGreaterThan(40);
    const wrong = [...thrown].filter(([code, status]) => ERROR_STATUS[code] === undefined || (status !== undefined && ERROR_STATUS[code] !== status));
    expect(wrong).toEqual([]);
  });

  it('the docs page is served from our own origin, with no script and nothing from elsewhere', async () => {
    const res = await ctx.app.api('GET', '/api/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.text).toContain('POST /api/campaigns/{id}/launch');
    expect(res.text).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)/);
  });
});
