import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';

/** A parameter written into SQL text. */
export const literal = (value: unknown) => (value === null || value === undefined ? 'null' : `'${String(value).replace(/'/g, "''")}'`);

/**
 * EXPLAIN (ANALYZE, BUFFERS) on `db`, as text, of the statement a repo call builds: `call` gets
 * a handle whose `execute` only captures the statement (so it must send one statement through
 * `execute`, and what it does with the empty answer does not matter), and the statement runs
 * with its parameters written in, planned for those values.
 */
export async function explainBuilt(db: Db, call: (capture: Db) => Promise<unknown>): Promise<string> {
  let captured: SQL | undefined;
  const capture = { execute: async (query: SQL) => ((captured = query), { rows: [] }) } as unknown as Db;
  await call(capture);
  const query = new PgDialect().sqlToQuery(captured!);
  const text = query.sql.replace(/\$(\d+)/g, (_m, i: string) => literal(query.params[Number(i) - 1]));
  return rowsOf<Record<string, string>>(await db.execute(sql.raw(`explain (analyze, buffers) ${text}`)))
    .map((r) => Object.values(r)[0]!)
    .join('\n');
}
