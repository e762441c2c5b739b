import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/pg-proxy';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';

/** A parameter written into SQL text. */
export const literal = (value: unknown) => (value === null || value === undefined ? 'null' : `'${String(value).replace(/'/g, "''")}'`);

/**
 * The statement a repo call builds, captured and not run: `call` gets a handle that only records
 * what it is asked to run (through `execute` or the query builder) and answers every statement
 * with no rows; the last statement it sends is kept.
 */
export async function captureBuilt(call: (capture: Db) => Promise<unknown>): Promise<{ sql: string; params: unknown[] }> {
  let captured: { sql: string; params: unknown[] } | undefined;
  const capture = drizzle(async (text, params) => ((captured = { sql: text, params }), { rows: [] }));
  // `execute` answers as the app's drivers do ({ rows }), which the repos read; a transaction's
  // work runs on the same handle (its statements before the last, such as locks, are not kept).
  Object.assign(capture, {
    execute: async (query: SQL) => ((captured = new PgDialect().sqlToQuery(query)), { rows: [] }),
    transaction: async (work: (tx: unknown) => Promise<unknown>) => work(capture),
  });
  await call(capture as unknown as Db);
  return captured!;
}

/** EXPLAIN (ANALYZE, BUFFERS) on `db`, as text, of the statement a repo call builds (captureBuilt), planned for its values. */
export async function explainBuilt(db: Db, call: (capture: Db) => Promise<unknown>): Promise<string> {
  return explainText(db, await captureBuilt(call));
}

/** EXPLAIN (ANALYZE, BUFFERS) on `db`, as text, of a captured statement, its parameters written in. */
export async function explainText(db: Db, query: { sql: string; params: unknown[] }): Promise<string> {
  const text = query.sql.replace(/\$(\d+)/g, (_m, i: string) => literal(query.params[Number(i) - 1]));
  return rowsOf<Record<string, string>>(await db.execute(sql.raw(`explain (analyze, buffers) ${text}`)))
    .map((r) => Object.values(r)[0]!)
    .join('\n');
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of a captured statement as each database runs it, as lines: PGlite
 * plans it generically (a GENERIC_PLAN statement, pglite-prepared.ts); the server's driver sends
 * it unnamed and it is planned for its values (written in here).
 */
export async function explainAsRun(target: Database, query: { sql: string; params: unknown[] }): Promise<string[]> {
  const plan = async (statement: string) => rowsOf<Record<string, string>>(await target.db.execute(sql.raw(statement))).map((r) => Object.values(r)[0]!);
  if (target.kind !== 'pglite') return plan(`explain (analyze, buffers) ${query.sql.replace(/\$(\d+)/g, (_m, i: string) => literal(query.params[Number(i) - 1]))}`);
  await target.db.execute(sql.raw(`prepare explained_plan as ${query.sql}`));
  await target.db.execute(sql.raw('set plan_cache_mode = force_generic_plan'));
  try {
    return await plan(`explain (analyze, buffers) execute explained_plan(${query.params.map(literal).join(', ')})`);
  } finally {
    await target.db.execute(sql.raw('reset plan_cache_mode'));
    await target.db.execute(sql.raw('deallocate explained_plan'));
  }
}
