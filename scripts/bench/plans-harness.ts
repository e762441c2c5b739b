/**
 * The query-plan audit's machinery (`plans.ts`): a Drizzle handle over a scratch database that
 * records every statement the app's code sends through it, and EXPLAIN (ANALYZE, BUFFERS) of
 * those statements replayed in order inside a transaction that is rolled back, so a case that
 * deletes (a purge) leaves the seeded data as it was for the next one.
 *
 * Per case it prints, for each statement: the top node, rows, shared buffers (hit + read),
 * execution time, any sequential scan of a table with its rows, and the foreign-key triggers
 * that fired (calls, time); and for the whole case the tables' sequential scans and tuples read
 * as `pg_stat_xact_user_tables` counted them, which includes the work done inside triggers
 * (a cascade's per-row lookups), which EXPLAIN's buffers leave out.
 */
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import { MIGRATIONS_FOLDER, type Db } from '../../src/db/connect.js';
import { PGLITE_EXTENSIONS } from '../../src/db/pglite-extensions.js';
import * as schema from '../../src/db/schema.js';

export interface Statement {
  sql: string;
  params: unknown[];
}

/** Runs SQL text with positional parameters; the same on both engines. */
export type Raw = (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

export interface PlanDatabase {
  label: string;
  db: Db;
  raw: Raw;
  /** Statements recorded since the last call (recording is on only inside `record`). */
  record<T>(work: (db: Db) => Promise<T>): Promise<Statement[]>;
  close(): Promise<void>;
}

class Rollback extends Error {}

/** A Drizzle handle whose logger keeps the statements sent while `recording` is set. */
function recorder() {
  const state = { recording: false, statements: [] as Statement[] };
  const logger = {
    logQuery(query: string, params: unknown[]) {
      if (!state.recording || /^\s*(begin|commit|rollback|savepoint|release)\b/i.test(query)) return;
      state.statements.push({ sql: query, params });
    },
  };
  return { state, logger };
}

/** Runs `work` in a transaction that is rolled back, recording what it sent. */
async function recordIn(db: Db, state: ReturnType<typeof recorder>['state'], work: (db: Db) => Promise<unknown>): Promise<Statement[]> {
  state.statements = [];
  await db
    .transaction(async (tx) => {
      state.recording = true;
      try {
        await work(tx as unknown as Db);
      } finally {
        state.recording = false;
      }
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  return state.statements;
}

/** An in-process PGlite (the app's engine; on its own thread there, the planner is the same). */
export async function pglitePlanDatabase(): Promise<PlanDatabase> {
  const client = new PGlite({ extensions: PGLITE_EXTENSIONS });
  const { state, logger } = recorder();
  const db = drizzlePglite({ client, schema, logger }) as unknown as Db;
  await migratePglite(drizzlePglite({ client, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
  const raw: Raw = async (text, params) => (await client.query<Record<string, unknown>>(text, params ?? [])).rows;
  return { label: 'PGlite 0.5.14 (PostgreSQL 18), in process', db, raw, record: (work) => recordIn(db, state, work), close: () => client.close() };
}

/** A database of its own on the server (created and dropped by the caller), one connection. */
export async function serverPlanDatabase(url: string): Promise<PlanDatabase> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const { state, logger } = recorder();
  const db = drizzlePg({ client: pool, schema, logger }) as unknown as Db;
  const migrator = new pg.Client({ connectionString: url });
  await migrator.connect();
  await migratePg(drizzlePg({ client: migrator, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
  await migrator.end();
  const raw: Raw = async (text, params) => (await pool.query(text, params ?? [])).rows as Record<string, unknown>[];
  const version = (await raw('show server_version'))[0]!.server_version;
  return { label: `PostgreSQL ${String(version)} server`, db, raw, record: (work) => recordIn(db, state, work), close: () => pool.end() };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

interface ExplainJson {
  Plan: PlanNode;
  'Execution Time': number;
  Triggers?: { 'Trigger Name': string; 'Constraint Name'?: string; Relation?: string; Time: number; Calls: number }[];
}

export interface StatementSummary {
  text: string;
  top: string;
  rows: number;
  buffers: number;
  ms: number;
  /** `relation: rows read` of each sequential scan (loops × (rows + removed)). */
  seqScans: string[];
  /** Index scans whose loops × rows read exceed 1,000 (the large ranges). */
  wideIndexScans: string[];
  triggers: string[];
}

function walk(node: PlanNode, visit: (node: PlanNode) => void) {
  visit(node);
  for (const child of node.Plans ?? []) walk(child, visit);
}

const pages = (node: PlanNode) => (node['Shared Hit Blocks'] ?? 0) + (node['Shared Read Blocks'] ?? 0);

/**
 * A statement's buffers are its top node's; a data-modifying CTE the query does not read runs
 * after the query, outside the top node's count: then its largest CTE's (a CTE's count includes
 * the CTEs it read) when that is more.
 */
function summarize(text: string, plan: ExplainJson): StatementSummary {
  const top = plan.Plan;
  const seqScans: string[] = [];
  const wideIndexScans: string[] = [];
  walk(top, (node) => {
    const read = node['Actual Loops'] * (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0));
    if (node['Node Type'] === 'Seq Scan') seqScans.push(`${node['Relation Name']}: ${read}${node['Actual Loops'] > 1 ? ` (${node['Actual Loops']} loops)` : ''}`);
    else if (/Index/.test(node['Node Type']) && node['Relation Name'] && read > 1_000) wideIndexScans.push(`${node['Relation Name']} via ${node['Index Name']}: ${read}`);
  });
  return {
    text,
    top: `${top['Node Type']}${top['Relation Name'] ? ` on ${top['Relation Name']}` : ''}`,
    rows: top['Actual Rows'],
    buffers: Math.max(...[top, ...(top.Plans ?? []).filter((p) => p['Subplan Name']?.startsWith('CTE '))].map(pages)),
    ms: plan['Execution Time'],
    seqScans,
    wideIndexScans,
    triggers: (plan.Triggers ?? []).filter((t) => t.Time >= 1 || t.Calls > 1).map((t) => `${t['Constraint Name'] ?? t['Trigger Name']}: ${t.Calls} calls, ${t.Time.toFixed(1)} ms`),
  };
}

/** A statement EXPLAIN takes (after any leading comments); others (set_config…) are run as they are. */
const EXPLAINABLE = /^\s*(?:(?:\/\*.*?\*\/|--[^\n]*\n)\s*)*(select|insert|update|delete|with)\b/is;

export interface CaseResult {
  statements: StatementSummary[];
  /** Per table touched: sequential scans, tuples they read, index tuples fetched (the whole case, triggers included). */
  tables: { table: string; seqScans: number; seqRead: number; idxFetched: number }[];
  ms: number;
}

const TABLE_STATS = `select relname as table, seq_scan::int as seq, seq_tup_read::bigint as seq_read, coalesce(idx_tup_fetch, 0)::bigint as idx_fetch from pg_stat_xact_user_tables`;

/** Replays the statements with EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON), in order, in one transaction rolled back. */
export async function explainAll(target: PlanDatabase, statements: Statement[]): Promise<CaseResult> {
  const summaries: StatementSummary[] = [];
  let before: Record<string, unknown>[] = [];
  let after: Record<string, unknown>[] = [];
  const started = performance.now();
  await target.db
    .transaction(async (tx) => {
      const run = async (text: string, params: unknown[] = []) => {
        // Through the transaction's connection (drizzle's session), with the statement's own parameters.
        const session = (tx as unknown as { session: { client: { query: (t: string, p: unknown[]) => Promise<{ rows: Record<string, unknown>[] }> } } }).session;
        return (await session.client.query(text, params)).rows;
      };
      before = await run(TABLE_STATS);
      for (const statement of statements) {
        if (!EXPLAINABLE.test(statement.sql)) {
          await run(statement.sql, statement.params);
          continue;
        }
        const [row] = await run(`explain (analyze, buffers, format json) ${statement.sql}`, statement.params);
        const json = Object.values(row!)[0];
        const plan = (typeof json === 'string' ? JSON.parse(json) : json) as ExplainJson[];
        summaries.push(summarize(statement.sql.replace(/\s+/g, ' ').trim(), plan[0]!));
      }
      after = await run(TABLE_STATS);
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  const base = new Map(before.map((r) => [String(r.table), r]));
  const tables = after
    .map((r) => {
      const b = base.get(String(r.table));
      return {
        table: String(r.table),
        seqScans: Number(r.seq) - Number(b?.seq ?? 0),
        seqRead: Number(r.seq_read) - Number(b?.seq_read ?? 0),
        idxFetched: Number(r.idx_fetch) - Number(b?.idx_fetch ?? 0),
      };
    })
    .filter((t) => t.seqRead > 0 || t.idxFetched > 1_000)
    .sort((a, b) => b.seqRead - a.seqRead);
  return { statements: summaries, tables, ms: performance.now() - started };
}

export interface CommittedResult {
  /** Heap and index pages touched (hit + read), every table, from pg_statio_user_tables. */
  pages: number;
  seqRead: number;
  idxFetched: number;
  ms: number;
}

const TOTALS = `select coalesce(sum(coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0) + coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0)), 0)::bigint as pages,
  (select coalesce(sum(seq_tup_read), 0) from pg_stat_user_tables)::bigint as seq_read,
  (select coalesce(sum(idx_tup_fetch), 0) from pg_stat_user_tables)::bigint as idx_fetch
  from pg_statio_user_tables`;

/**
 * A loop of batches as it really runs, each batch committed (a later batch then sees the earlier
 * ones' rows gone, as the replay in one transaction cannot): the pages and tuples the whole loop
 * touched, from the cumulative statistics. It changes the data: run such cases last.
 */
export async function runCommitted(target: PlanDatabase, work: (db: Db) => Promise<unknown>): Promise<CommittedResult> {
  const totals = async () => {
    // This connection's pending counts are written out first (PostgreSQL 15+).
    await target.raw('select pg_stat_force_next_flush()');
    await target.raw('select 1');
    const [row] = await target.raw(TOTALS);
    return { pages: Number(row!.pages), seqRead: Number(row!.seq_read), idxFetched: Number(row!.idx_fetch) };
  };
  const before = await totals();
  const started = performance.now();
  await work(target.db);
  const ms = performance.now() - started;
  const after = await totals();
  return { pages: after.pages - before.pages, seqRead: after.seqRead - before.seqRead, idxFetched: after.idxFetched - before.idxFetched, ms };
}
