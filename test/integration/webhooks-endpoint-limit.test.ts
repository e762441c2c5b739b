import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { signUp, startTestApp, TEST_ENV, type TestApp } from '../helpers/test-app.js';

/*
 * A workspace has at most WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE webhook endpoints (3 here).
 * Before, there was no cap: every endpoint is one more delivery of each event it subscribes
 * to, and one workspace could create thousands. The count is taken under a lock of the
 * workspace's endpoint count, so creates at the limit arriving together cannot all pass — on
 * PGlite (one connection) and on a PostgreSQL server (a pool of connections) alike.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let neighbour: Awaited<ReturnType<typeof signUp>>;

beforeAll(async () => {
  app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE: '3' } });
  owner = await signUp(app);
  neighbour = await signUp(app);
}, 60_000);
afterAll(async () => {
  await app?.close();
});

const create = (token: string, n: number | string) => app.api('POST', '/api/webhooks', { token, json: { url: `http://127.0.0.1:9/hooks/${n}`, eventTypes: ['open'] } });
const countOf = async (workspaceId: string) =>
  Number(rowsOf<{ n: number }>(await app.database.db.execute(sql`select count(*)::int as n from webhook_endpoints where workspace_id = ${workspaceId}::uuid`))[0]!.n);

describe('webhook endpoints per workspace', () => {
  it('one past the limit is refused with 409 webhook_endpoint_limit and nothing is created; other workspaces are not counted; deleting one makes room', async () => {
    const made = [];
    for (const n of [1, 2, 3]) {
      const res = await create(owner.token, n);
      expect(res.status).toBe(201);
      made.push(res.body.id as string);
    }
    const refused = await create(owner.token, 4);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('webhook_endpoint_limit');
    expect(refused.body.error.message).toMatch(/at most 3 webhook endpoints/);
    expect(await countOf(owner.workspaceId)).toBe(3);
    // A disabled endpoint still counts (it can be turned on again).
    expect((await app.api('PATCH', `/api/webhooks/${made[0]}`, { token: owner.token, json: { enabled: false } })).status).toBe(200);
    expect((await create(owner.token, 5)).status).toBe(409);

    expect((await create(neighbour.token, 1)).status).toBe(201);

    expect((await app.api('DELETE', `/api/webhooks/${made[0]}`, { token: owner.token })).status).toBe(204);
    expect((await create(owner.token, 6)).status).toBe(201);
    expect(await countOf(owner.workspaceId)).toBe(3);
  });

  it('creates arriving together at the limit: exactly one passes, the rest get 409', async () => {
    const [first] = (await app.api('GET', '/api/webhooks', { token: owner.token })).body.endpoints;
    expect((await app.api('DELETE', `/api/webhooks/${first.id}`, { token: owner.token })).status).toBe(204);
    expect(await countOf(owner.workspaceId)).toBe(2);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => create(owner.token, `race-${i}`)));
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    expect(results.filter((r) => r.status === 409).every((r) => r.body.error.code === 'webhook_endpoint_limit')).toBe(true);
    expect(await countOf(owner.workspaceId)).toBe(3);
  });

  it('WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE is validated at boot; 20 by default', () => {
    expect(loadConfig(TEST_ENV).webhooks.maxEndpointsPerWorkspace).toBe(20);
    expect(loadConfig({ ...TEST_ENV, WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE: '50' }).webhooks.maxEndpointsPerWorkspace).toBe(50);
    for (const bad of ['0', '-1', '2.5', 'many', '1001']) {
      expect(() => loadConfig({ ...TEST_ENV, WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE: bad })).toThrow(ConfigError);
      expect(() => loadConfig({ ...TEST_ENV, WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE: bad })).toThrow(/WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE/);
    }
  });
});
