import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createContactsRepo } from '../../src/contacts/contacts.repo.js';
import type { Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createEmbeddedMaintenance } from '../../src/db/embedded-maintenance.js';
import { explainBuilt } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * PGlite has no autovacuum, so until these jobs nothing ever analysed or vacuumed the embedded
 * database: every plan was made without statistics (a contact search read the whole workspace,
 * sorted, instead of its trigram index) and dead rows were never reclaimed
 * (src/db/embedded-maintenance.ts). On the test database: on PGlite, ANALYZE gives the planner
 * its statistics and the search its index, VACUUM visits every table; on a server
 * (TEST_DATABASE_URL) both do nothing, autovacuum's job.
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

/** EXPLAIN (ANALYZE) of a contact search for a rare text, as the repo builds it: its last statement, the index step. */
const searchPlan = () => explainBuilt(database.db, (capture) => createContactsRepo(capture, (email) => email).list(workspaceId, { limit: 51, search: 'p2042@' }));

it('analyses the embedded database’s changed tables, so a search reads its index; vacuums them; leaves a server to autovacuum', async () => {
  const maintenance = createEmbeddedMaintenance(database);
  if (database.kind !== 'pglite') {
    expect(maintenance.needed).toBe(false);
    expect(await maintenance.analyze()).toEqual([]);
    expect(await maintenance.vacuum()).toEqual([]);
    return;
  }
  expect(maintenance.needed).toBe(true);
  // Never analysed: no statistics, and the search walks the workspace's contacts.
  expect(await contactStatistics()).toBe(0);
  expect(await searchPlan()).not.toMatch(/Bitmap Index Scan on contacts_search_workspace_trgm_idx/);

  // The first pass: every table (none was ever analysed), partitioned parents by themselves.
  const first = await maintenance.analyze();
  expect(first).toEqual(expect.arrayContaining(['public.contacts', 'public.campaign_sends', 'public.tracking_events', 'public.tracking_events_default']));
  expect(await contactStatistics()).toBeGreaterThan(0);
  const plan = await searchPlan();
  expect(plan).toMatch(/Bitmap Index Scan on contacts_search_workspace_trgm_idx/);
  expect(plan).not.toMatch(/Seq Scan on contacts/);

  // Nothing changed since: nothing to do. Then a third of the contacts changed: that table alone.
  expect(await maintenance.analyze()).toEqual([]);
  await database.db.execute(sql`update contacts set last_name = last_name || '.' where workspace_id = ${workspaceId}::uuid and email like 'p1%'`);
  expect(await maintenance.analyze()).toEqual(['public.contacts']);

  // The first vacuum: every table; then only one with enough dead rows.
  expect(await maintenance.vacuum()).toEqual(expect.arrayContaining(['public.contacts', 'public.campaign_sends', 'public.messages', 'public.workspaces']));
  expect(await maintenance.vacuum()).toEqual([]);
  await database.db.execute(sql`update contacts set first_name = first_name || '.' where workspace_id = ${workspaceId}::uuid and email like 'p2%'`);
  expect(await maintenance.vacuum()).toEqual(['public.contacts']);
});

it('a process that is stopping starts no further table (the engine is the tracking writer\'s then); what is left stays due', async () => {
  const maintenance = createEmbeddedMaintenance(database);
  if (database.kind !== 'pglite') return;
  await maintenance.analyze();
  await maintenance.vacuum();
  await database.db.execute(sql`update contacts set last_name = last_name || '!' where workspace_id = ${workspaceId}::uuid and email like 'p1%'`);
  expect(await maintenance.analyze({ stopping: () => true })).toEqual([]);
  expect(await maintenance.vacuum({ stopping: () => true })).toEqual([]);
  expect(await maintenance.analyze()).toEqual(['public.contacts']);
  expect(await maintenance.vacuum()).toEqual(['public.contacts']);
});

it('checkpoints the embedded database once enough WAL was written (PGlite has no checkpointer), not when idle; a server is left to its own', async () => {
  const maintenance = createEmbeddedMaintenance(database);
  if (database.kind !== 'pglite') {
    expect(await maintenance.checkpoint({ walBytes: 0 })).toBeUndefined();
    return;
  }
  const walSinceCheckpoint = async () =>
    Number(rowsOf<{ n: number }>(await database.db.execute(sql`select pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn)::float8 as n from pg_control_checkpoint()`))[0]!.n);
  const MB = 1024 * 1024;
  await maintenance.checkpoint({ walBytes: 0 });
  expect(await walSinceCheckpoint()).toBeLessThan(MB);
  // Nothing written since: not due, by size or by age.
  expect(await maintenance.checkpoint({ walBytes: 8 * MB, maxAgeMs: 0 })).toBeUndefined();

  // ~20 MB of WAL: due past a smaller threshold, or (past one segment) once old enough.
  await database.db.execute(sql`
    insert into contacts (workspace_id, email, first_name, last_name)
    select ${workspaceId}::uuid, 'wal' || g || '@stats.test', 'First' || g, 'Last' || g from generate_series(1, 40000) g`);
  const written = await walSinceCheckpoint();
  expect(written).toBeGreaterThan(16 * MB);
  expect(await maintenance.checkpoint()).toBeUndefined(); // under 512 MB and just taken
  expect(await maintenance.checkpoint({ maxAgeMs: 0 })).toEqual({ walBytes: expect.any(Number) });
  expect(await walSinceCheckpoint()).toBeLessThan(MB);
});
