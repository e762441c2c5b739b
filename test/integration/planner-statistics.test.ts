import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pg-proxy';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createContactsRepo } from '../../src/contacts/contacts.repo.js';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createPlannerStatistics } from '../../src/db/planner-statistics.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * PGlite has no autovacuum, so until this job nothing ever analysed the embedded database and
 * every plan was made without statistics: a contact search read the whole workspace (sorted)
 * instead of its trigram index (src/db/planner-statistics.ts). The job's refresh, on the test
 * database: on PGlite it gives the planner its statistics and the search its index; on a
 * server (TEST_DATABASE_URL) it does nothing, autovacuum's job.
 */
const CONTACTS = 3_000;
let database: Database;
let workspaceId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  const [ws] = rowsOf<{ id: string }>(await database.db.execute(sql`insert into workspaces (name) values ('stats') returning id`));
  workspaceId = ws!.id;
  await database.db.execute(sql`
    insert into contacts (workspace_id, email, first_name, last_name)
    select ${workspaceId}::uuid, 'p' || g || '@stats.test', 'First' || g, 'Last' || g from generate_series(1, ${CONTACTS}) g`);
}, 60_000);
afterAll(() => database?.close());

const contactStatistics = async () =>
  Number(rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from pg_stats where schemaname = 'public' and tablename = 'contacts'`))[0]!.n);

/** EXPLAIN (ANALYZE) of a contact search for a rare text, as the repo builds it. */
async function searchPlan(): Promise<string> {
  let captured: { sql: string; params: unknown[] } | undefined;
  const capture = drizzle(async (text, params) => ((captured = { sql: text, params }), { rows: [] })) as unknown as Db;
  await createContactsRepo(capture, (email) => email).list(workspaceId, { limit: 51, search: 'p2042@' });
  const text = captured!.sql.replace(/\$(\d+)/g, (_m, i: string) => `'${String(captured!.params[Number(i) - 1]).replace(/'/g, "''")}'`);
  return rowsOf<Record<string, string>>(await database.db.execute(sql.raw(`explain (analyze) ${text}`)))
    .map((r) => Object.values(r)[0]!)
    .join('\n');
}

it('refreshes the embedded database’s planner statistics, so a search reads its index; leaves a server to autovacuum', async () => {
  const statistics = createPlannerStatistics(database);
  if (database.kind !== 'pglite') {
    expect(statistics.needed).toBe(false);
    expect(await statistics.refresh()).toBe(false);
    return;
  }
  expect(statistics.needed).toBe(true);
  // Never analysed: no statistics, and the search walks the workspace's contacts.
  expect(await contactStatistics()).toBe(0);
  expect(await searchPlan()).not.toMatch(/Bitmap Index Scan on contacts_search_trgm_idx/);

  expect(await statistics.refresh()).toBe(true);
  expect(await contactStatistics()).toBeGreaterThan(0);
  const plan = await searchPlan();
  expect(plan).toMatch(/Bitmap Index Scan on contacts_search_trgm_idx/);
  expect(plan).not.toMatch(/Seq Scan on contacts/);
});
