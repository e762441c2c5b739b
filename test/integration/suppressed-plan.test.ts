import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createSuppressionRepo } from '../../src/suppression/suppression.repo.js';
import { captureBuilt, explainText } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * 1:1 mail's claim asks the one suppression rule (suppression/suppressed-sql.ts) of its
 * recipients, under their address locks: two index probes per recipient, never a read of the
 * list, whatever its size — planned on empty tables (a generic plan PGlite may keep as the list
 * grows, as the campaign claim's: send-claim-plan.test.ts), and run with 20,000 entries.
 */
const hashAddress = createAddressHasher('plan-key');
const recipients = ['Ann@Example.test', 'bob@example.test', 'carol@example.test'];
const statement = (workspaceId: string) => captureBuilt((capture) => createSuppressionRepo(capture, hashAddress).findSuppressed(workspaceId, recipients));

/** An empty migrated PGlite (a fresh install's generic plan), and the test database (PGlite or the server) with rows. */
let empty: Database;
let data: Database;
beforeAll(async () => {
  [empty, data] = await Promise.all([connect({ kind: 'pglite', dir: 'memory://' }), createTestDatabase()]);
  await empty.migrate();
});
afterAll(() => Promise.all([empty?.close(), data?.close()]));

describe('1:1 mail’s suppression check', () => {
  it('its generic plan on empty tables (PGlite) probes both indexes per recipient; no scan or hash of the list', async () => {
    const { sql: text } = await statement(randomUUID());
    const client = (empty.db as unknown as { $client: { exec(query: string): Promise<{ rows: { 'QUERY PLAN': string }[] }[]> } }).$client;
    const [result] = await client.exec(`explain (generic_plan) ${text}`);
    const plan = result!.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).not.toMatch(/Seq Scan on suppressions|Hash/);
    expect(plan).toMatch(/Index (Only )?Scan using suppressions_workspace_\w+ on suppressions sp/);
    expect(plan).toMatch(/Index (Only )?Scan using suppressions_workspace_hash_scope_unique on suppressions sh/);
  });

  it('with 20,000 entries finds one by address (any case) and a purged one by its hash, reading a few pages', async () => {
    const [ws] = rowsOf<{ id: string }>(await data.db.execute(sql`insert into workspaces (name) values ('plan') returning id`));
    const workspaceId = ws!.id;
    await data.db.execute(sql`
      insert into suppressions (workspace_id, email, address_hash, scope, reason, source)
      select ${workspaceId}::uuid, 's' || g || '@example.test', md5(g::text), 'all', 'manual', 'api' from generate_series(1, 20000) g`);
    await data.db.execute(sql`insert into suppressions (workspace_id, email, address_hash, scope, reason, source) values
      (${workspaceId}::uuid, 'ann@example.test', ${hashAddress('ann@example.test')}, 'all', 'unsubscribe', 'api'),
      (${workspaceId}::uuid, null, ${hashAddress('bob@example.test')}, 'all', 'unsubscribe', 'api')`);
    await data.db.execute(sql`analyze suppressions`);
    expect(await createSuppressionRepo(data.db, hashAddress).findSuppressed(workspaceId, recipients)).toEqual(new Set(['ann@example.test', 'bob@example.test']));
    const plan = await explainText(data.db, await statement(workspaceId));
    expect(plan).not.toMatch(/Seq Scan on suppressions/);
    const buffers = [...plan.matchAll(/Buffers: shared hit=(\d+)(?: read=(\d+))?/g)].map(([, hit, read]) => Number(hit) + Number(read ?? 0));
    // The top node's count: every page the statement read (3 recipients × 2 probes).
    expect(buffers[0], plan).toBeLessThanOrEqual(40);
  });
});
