import { sql, type SQL, type SQLWrapper } from 'drizzle-orm';
/** Raw-SQL helpers shared by repos: the rows of a result, and arrays bound as one parameter. */
type Rows<T> = { rows: T[] };

/** The rows of a `db.execute` result (both drivers return `{ rows }`). */
export const rowsOf = <T>(result: unknown): T[] => (result as Rows<T>).rows;

/**
 * A Postgres array literal (`{"a","b",NULL}`) for one text parameter: a batch of any size
 * is then a dozen parameters (insert … select from unnest), instead of one per value.
 */
export function pgArray(values: readonly (string | number | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i += 1) {
    if (i > 0) out += ',';
    const value = values[i];
    if (value === null || value === undefined) out += 'NULL';
    else if (typeof value === 'number') out += String(value);
    else out += `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  }
  return `${out}}`;
}

/**
 * `expression = any($1::text[])`: a list from outside (a mail's headers, say) bound as one
 * parameter. An IN list binds one per value, and PostgreSQL takes at most 65,535 a statement:
 * one mail naming 70,000 message ids would fail the statement every time it was read.
 */
export const anyOf = (expression: SQLWrapper, values: readonly string[]): SQL => sql`${expression} = any(${pgArray(values)}::text[])`;
