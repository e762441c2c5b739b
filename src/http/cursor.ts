import { sql, type AnyColumn, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { ValidationError } from '../errors.js';

/**
 * Keyset pagination: an opaque cursor naming the last row's (created_at, id).
 * The time travels as text at the database's own precision (microseconds): a JavaScript
 * Date keeps milliseconds only, and rows created within one millisecond would otherwise
 * fall between two pages on a PostgreSQL server.
 */
export interface PageCursor {
  /** `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as `cursorTimestamp` selects it. */
  createdAt: string;
  id: string;
}

/** The column as cursor text, in UTC at microsecond precision (select it beside the row). */
export const cursorTimestamp = (column: AnyColumn) => sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Rows after the cursor in (created_at desc, id desc) order, compared as one row value. */
export const olderThanCursor = (createdAt: AnyColumn, id: AnyColumn, cursor: PageCursor): SQL =>
  sql`(${createdAt}, ${id}) < (${cursor.createdAt}::timestamptz, ${cursor.id}::uuid)`;

export const encodeCursor = (row: { cursorAt: string; id: string }) => Buffer.from(`${row.cursorAt}|${row.id}`).toString('base64url');

/**
 * A page from rows read with `limit + 1`: the first `limit`, and the cursor of the last of them
 * when the extra row shows there is more (null on the last page).
 */
export function keysetPage<T extends { cursorAt: string; id: string }>(rows: T[], limit: number): { page: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  return { page, nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Four-digit years only (what `cursorTimestamp` prints); fractions up to microseconds. */
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z$/;

/** Validates everything before a query sees it: a forged cursor is a 400, never a cast error. */
export function decodeCursor(cursor: string): PageCursor {
  const invalid = () => new ValidationError([{ field: 'cursor', message: 'is not a cursor this API returned' }]);
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw invalid();
  const bytes = Buffer.from(cursor, 'base64url');
  if (bytes.toString('base64url') !== cursor) throw invalid();
  const [at, id, ...extra] = bytes.toString('utf8').split('|');
  const match = TIMESTAMP.exec(at ?? '');
  if (!match || !id || !UUID.test(id) || extra.length > 0) throw invalid();
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  const date = new Date(Date.UTC(year!, month! - 1, day!, hour!, minute!, second!));
  const sane =
    year! >= 1970 && date.getUTCFullYear() === year && date.getUTCMonth() === month! - 1 && date.getUTCDate() === day && hour! < 24 && minute! < 60 && second! < 60;
  if (!sane) throw invalid();
  return { createdAt: at!, id };
}

/** The `cursor` query field: validated and decoded by the request schema, before any query. */
export const pageCursorField = z.string().transform((value, ctx) => {
  try {
    return decodeCursor(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not a cursor this API returned' });
    return z.NEVER;
  }
});
