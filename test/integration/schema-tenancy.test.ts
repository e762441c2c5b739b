import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * The precondition for distributing the database by workspace on Citus (docs/SCALING.md),
 * read from the migrated catalog so that every new table is held to it:
 * - every table holds one workspace's data and carries a NOT NULL `workspace_id`, unless it
 *   is named below with the reason it is not workspace data;
 * - every primary and unique key of such a table includes `workspace_id`, or a column whose
 *   values are random UUIDs (unique across all workspaces by construction), or is named
 *   below with the reason its values are globally unique.
 */

/** Tables that are not one workspace's data, and what they become on Citus. */
const GLOBAL_TABLES: Record<string, string> = {
  workspaces: 'the tenant itself: distributed by its own id, co-located with everything else',
  users: 'an account may belong to several workspaces (memberships): a reference table',
  used_oauth_states: 'single-use OAuth state ids, consumed before any workspace is known: a reference table',
  auth_attempts: 'login and signup throttling by account address and client address, before any workspace is chosen: a reference table',
  job_schedule: 'one row per periodic job, shared by every process: coordination, not tenant data (stays on the coordinator)',
  mailbox_limits: "one row per mailbox (keyed by the mailbox's random UUID): quota, pace and sync lease that workers update by mailbox id alone; on Citus it would gain workspace_id to sit beside its mailbox",
  mailbox_budget_accounts:
    "the daily budget's headroom of one Gmail address, shared by its mailboxes in every workspace (Gmail's limit is the account's): a reference table, or on the coordinator",
  signup_requests: 'pending signups: the workspace is created only when the code comes back; a reference table',
  policy_versions: 'the service-wide privacy policy versions and their Gmail disclosure text (P-18): one policy for every workspace, a reference table',
};

/** Unique keys whose values are unique across all workspaces without naming one. */
const GLOBALLY_UNIQUE_KEYS: Record<string, string> = {
  invitations_token_hash_unique: 'SHA-256 of a random 32-byte invitation token',
  api_keys_key_hash_unique: 'SHA-256 of a random 32-byte API key (a key is looked up before its workspace is known)',
  web_sessions_token_hash_unique: 'SHA-256 of a random 32-byte session cookie value',
};

let database: Database;
type Rows<T> = { rows: T[] };
const query = async <T>(text: ReturnType<typeof sql>) => ((await database.db.execute(text)) as unknown as Rows<T>).rows;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

/** Tables of workspace data without a NOT NULL workspace_id. */
async function tablesWithoutWorkspace() {
  const tables = await query<{ name: string; workspace_column: string | null; not_null: boolean | null }>(sql`
    select c.relname as name, a.attname as workspace_column, a.attnotnull as not_null
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
    left join pg_attribute a on a.attrelid = c.oid and a.attname = 'workspace_id' and not a.attisdropped
    where c.relkind in ('r', 'p') and not c.relispartition
    order by 1`);
  expect(tables.length).toBeGreaterThan(10);
  for (const name of Object.keys(GLOBAL_TABLES)) expect(tables.map((t) => t.name)).toContain(name);
  return tables.filter((t) => !(t.name in GLOBAL_TABLES) && !(t.workspace_column && t.not_null)).map((t) => t.name);
}

/** Primary and unique keys of workspace data that could collide across workspaces. */
async function keysAcrossWorkspaces() {
  const keys = await query<{ table_name: string; index_name: string; columns: string[] | string; definition: string }>(sql`
    select t.relname as table_name, i.relname as index_name, pg_get_indexdef(x.indexrelid) as definition,
      array(select a.attname::text from unnest(x.indkey) k join pg_attribute a on a.attrelid = t.oid and a.attnum = k) as columns
    from pg_index x
    join pg_class i on i.oid = x.indexrelid
    join pg_class t on t.oid = x.indrelid and not t.relispartition
    join pg_namespace n on n.oid = t.relnamespace and n.nspname = 'public'
    where x.indisunique
    order by 1, 2`);
  const randomUuidColumns = await query<{ table_name: string; column_name: string }>(sql`
    select table_name, column_name from information_schema.columns
    where table_schema = 'public' and data_type = 'uuid' and column_default like 'gen_random_uuid()%'`);
  const isRandomUuid = (table: string, column: string) => randomUuidColumns.some((c) => c.table_name === table && c.column_name === column);
  // An array of names comes back as an array or as its text form, depending on the driver.
  const columnsOf = (k: (typeof keys)[number]) => (Array.isArray(k.columns) ? k.columns : String(k.columns).replace(/[{}]/g, '').split(','));
  expect(keys.length).toBeGreaterThan(10);
  return keys
    .filter((k) => !(k.table_name in GLOBAL_TABLES) && !(k.index_name in GLOBALLY_UNIQUE_KEYS))
    .filter((k) => !columnsOf(k).some((column) => column === 'workspace_id' || isRandomUuid(k.table_name, column)))
    .map((k) => k.definition);
}

describe('schema: ready to distribute by workspace', () => {
  it('every table of workspace data carries a NOT NULL workspace_id', async () => {
    expect(await tablesWithoutWorkspace(), 'add workspace_id, or name the table in GLOBAL_TABLES with why').toEqual([]);
  });

  it('every primary and unique key of workspace data includes workspace_id or a random UUID', async () => {
    expect(await keysAcrossWorkspaces(), 'append workspace_id to these keys').toEqual([]);
  });

  it('both rules catch a table of workspace data without workspace_id, and a key across workspaces', async () => {
    await database.db.execute(sql`create table scratch_tenant_data (name text primary key, owner uuid not null default gen_random_uuid(), workspace_id uuid)`);
    await database.db.execute(sql`create unique index scratch_tenant_data_owner_name on scratch_tenant_data (owner, name)`);
    try {
      expect(await tablesWithoutWorkspace()).toEqual(['scratch_tenant_data']);
      const offending = await keysAcrossWorkspaces();
      expect(offending).toHaveLength(1);
      expect(offending[0]).toContain('scratch_tenant_data_pkey');
    } finally {
      await database.db.execute(sql`drop table scratch_tenant_data`);
    }
  });
});
