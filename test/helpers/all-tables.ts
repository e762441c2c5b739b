import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';

/**
 * Every table of the database whose rows mention `needle`, with how many rows do: each row
 * is cast to text whole (every column, arrays and jsonb included) and searched
 * case-insensitively. What P-13's "nothing of that address is left" is checked against.
 */
export async function tablesMentioning(db: Db, needle: string): Promise<Record<string, number>> {
  const tables = rowsOf<{ table_name: string }>(
    await db.execute(sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`),
  ).map((t) => String(t.table_name));
  const found: Record<string, number> = {};
  for (const table of tables) {
    const [row] = rowsOf<{ n: number }>(
      await db.execute(sql`select count(*)::int as n from ${sql.identifier(table)} t where position(lower(${needle}) in lower(t::text)) > 0`),
    );
    if (Number(row?.n ?? 0) > 0) found[table] = Number(row!.n);
  }
  return found;
}
