import { Router } from 'express';
import { z } from 'zod';
import { html, SafeHtml } from '../web/html.js';
import { renderPage } from '../web/layout.js';
import { API_SCOPES, ERROR_STATUS, commonErrors, type ApiRoute } from './api-spec.js';
import { RESPONSE_COMPONENTS } from './response-schemas.js';

type Json = Record<string, unknown>;

/** The JSON Schema (2020-12, as OpenAPI 3.1 uses) of what a client sends, from the zod schema that checks it. */
function inputSchema(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  return rest;
}

interface ResponseSchemas {
  /** The schema of one answer: a `$ref` to a named component, or the schema inline. */
  of(schema: z.ZodType): Json;
  /** The named ones, for `components.schemas`. */
  components: Record<string, Json>;
}

/**
 * What the service sends (`io: 'output'`: objects closed, defaults applied), from the response
 * schemas of the routes. All are converted in one pass over a registry, so a named component
 * (response-schemas.ts RESPONSE_COMPONENTS) used inside another answer becomes a `$ref` to it.
 */
function responseSchemas(routes: readonly ApiRoute[], named: Record<string, z.ZodType>): ResponseSchemas {
  const registry = z.registry<{ id: string }>();
  const names = new Map<z.ZodType, string>();
  for (const [name, schema] of Object.entries(named)) {
    registry.add(schema, { id: name });
    names.set(schema, name);
  }
  const anonymous = new Map<z.ZodType, string>();
  for (const r of routes) {
    for (const [status, answer] of Object.entries(r.responses)) {
      if (typeof answer === 'string' || names.has(answer.schema) || anonymous.has(answer.schema)) continue;
      const id = `${operationId(r)}${status}`;
      registry.add(answer.schema, { id });
      anonymous.set(answer.schema, id);
    }
  }
  const { schemas } = z.toJSONSchema(registry, { io: 'output', target: 'draft-2020-12', unrepresentable: 'any', uri: (id) => `#/components/schemas/${id}` }) as {
    schemas: Record<string, Json>;
  };
  const bare = (id: string) => {
    const { $schema: _dialect, $id: _id, ...rest } = schemas[id]!;
    return rest;
  };
  // An answer that is also part of another (a route's whole answer nested in another's) is
  // referred to by its id: it goes under components too, or the `$ref` would point nowhere.
  const referred = new Set([...JSON.stringify(schemas).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!));
  const components = [...names.values(), ...[...anonymous.values()].filter((id) => referred.has(id))];
  return {
    of: (schema) => {
      const id = names.get(schema) ?? anonymous.get(schema)!;
      return names.has(schema) || referred.has(id) ? { $ref: `#/components/schemas/${id}` } : bare(id);
    },
    components: Object.fromEntries(components.map((id) => [id, bare(id)])),
  };
}

const openApiPath = (path: string) => path.replace(/:([A-Za-z_]+)/g, '{$1}');
const pathParams = (path: string) => [...path.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]!);
const operationId = (r: ApiRoute) =>
  `${r.method}${r.path
    .split(/[/.-]/)
    .filter(Boolean)
    .map((s) => (s.startsWith(':') ? `By${s[1]!.toUpperCase()}${s.slice(2)}` : s[0]!.toUpperCase() + s.slice(1)))
    .join('')}`;

function parameters(r: ApiRoute): Json[] {
  const params: Json[] = pathParams(r.path).map((name) => ({
    name,
    in: 'path',
    required: true,
    schema: name === 'id' ? { type: 'string', format: 'uuid' } : { type: 'string' },
  }));
  if (r.query) {
    const schema = inputSchema(r.query) as { properties?: Record<string, Json>; required?: string[] };
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      params.push({ name, in: 'query', required: schema.required?.includes(name) ?? false, schema: property });
    }
  }
  if (r.idempotent) {
    params.push({
      name: 'Idempotency-Key',
      in: 'header',
      required: false,
      description: 'Same key (per caller and route) within 24 h returns the first answer and never repeats the action',
      schema: { type: 'string', minLength: 1, maxLength: 255 },
    });
  }
  return params;
}

function responses(r: ApiRoute, bodies: ResponseSchemas): Json {
  const out: Json = {};
  for (const [status, answer] of Object.entries(r.responses)) {
    const { description, schema } = typeof answer === 'string' ? { description: answer, schema: undefined } : answer;
    out[status] = r.produces && r.produces !== 'application/json'
      ? { description, content: { [r.produces]: {} } }
      : status === '204' || status === '302'
        ? { description }
        : { description, content: { 'application/json': { schema: schema ? bodies.of(schema) : {} } } };
  }
  // Error codes grouped by their status; every error has the same body.
  const byStatus = new Map<number, string[]>();
  for (const code of new Set([...commonErrors(r), ...(r.errors ?? [])])) {
    const status = ERROR_STATUS[code] ?? 400;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    if (out[status]) continue;
    out[status] = {
      description: `error: ${codes.join(', ')}`,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      'x-error-codes': codes,
    };
  }
  return out;
}

function operation(r: ApiRoute, bodies: ResponseSchemas): Json {
  const op: Json = {
    operationId: operationId(r),
    summary: r.summary,
    tags: [r.tag],
    'x-access': r.access,
    ...(r.roles ? { description: `Roles: ${r.roles.join(', ')}.` } : {}),
    security: r.access === 'public' ? [] : r.access === 'session' ? [{ session: [] }] : [{ session: [] }, { apiKey: [r.access] }],
    parameters: parameters(r),
    responses: responses(r, bodies),
  };
  if (r.body === 'csv') {
    op.requestBody = { required: true, content: { 'text/csv': { schema: { type: 'string' } } } };
  } else if (r.body) {
    op.requestBody = { required: true, content: { 'application/json': { schema: inputSchema(r.body) } } };
  }
  return op;
}

/** The OpenAPI 3.1 document of the registry: built from the zod schemas that validate the requests, and those of the JSON answers. */
export function buildOpenApiDocument(routes: readonly ApiRoute[], webhooks: Record<string, { summary: string; payload: z.ZodType }>, serverUrl: string): Json {
  const bodies = responseSchemas(routes, RESPONSE_COMPONENTS);
  const paths: Record<string, Json> = {};
  for (const r of routes) (paths[openApiPath(r.path)] ??= {})[r.method] = operation(r, bodies);
  return {
    openapi: '3.1.0',
    info: {
      title: 'inboxtrail API',
      version: '1',
      description:
        'JSON in and out. Errors are {"error":{"code","message","details"}} with a stable snake_case code. ' +
        'Authenticate with `Authorization: Bearer <session token>` (POST /api/auth/login) or `Bearer itk_…` (an API key; scopes read, send, admin — admin covers all).',
    },
    servers: [{ url: serverUrl }],
    paths,
    webhooks: Object.fromEntries(
      Object.entries(webhooks).map(([event, w]) => [
        event,
        { post: { summary: w.summary, requestBody: { content: { 'application/json': { schema: inputSchema(w.payload) } } }, responses: { 200: { description: 'received' } } } },
      ]),
    ),
    components: {
      securitySchemes: {
        session: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A member session token' },
        apiKey: { type: 'http', scheme: 'bearer', description: `An API key (itk_…) with one of the scopes ${API_SCOPES.join(', ')}` },
      },
      schemas: {
        ...bodies.components,
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'string', enum: Object.keys(ERROR_STATUS).sort() }, message: { type: 'string' }, details: {} },
            },
          },
        },
      },
    },
  };
}

/** The reference page: rendered here from the document, no script and nothing from another origin. */
function renderDocs(document: Json): string {
  const paths = document.paths as Record<string, Record<string, Json>>;
  const rows = Object.entries(paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => {
      const body = (op.requestBody as { content: Record<string, { schema: unknown }> } | undefined)?.content;
      const params = (op.parameters as { name: string; in: string; required: boolean }[]).map((p) => `${p.name} (${p.in}${p.required ? ', required' : ''})`);
      const codes = Object.entries(op.responses as Record<string, Json>).map(([status, r]) => `${status}: ${String(r.description)}`);
      return html`<section id="${String(op.operationId)}">
<h2><code>${method.toUpperCase()} ${path}</code></h2>
<p>${String(op.summary)} <span class="muted">— access: ${String(op['x-access'])}${op.description ? ` · ${String(op.description)}` : ''}</span></p>
${params.length ? html`<p>Parameters: ${params.join(', ')}</p>` : ''}
${body ? html`<details><summary>Request body (${Object.keys(body).join(', ')})</summary><pre>${JSON.stringify(Object.values(body)[0]?.schema, null, 2)}</pre></details>` : ''}
<ul>${codes.map((c) => html`<li>${c}</li>`)}</ul>
</section>`;
    }),
  );
  return renderPage(
    'inboxtrail API',
    html`<h1>inboxtrail API</h1><p>${String((document.info as Json).description)}</p><p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1).</p>${new SafeHtml(rows.map(String).join('\n'))}`,
  );
}

/** Public: the document and its page, both built once. */
export function openApiRoutes(document: Json): Router {
  const router = Router();
  const page = renderDocs(document);
  router.get('/openapi.json', (_req, res) => {
    res.json(document);
  });
  router.get('/docs', (_req, res) => {
    res.type('html').send(page);
  });
  return router;
}
