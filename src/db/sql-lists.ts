import { sql, type AnyColumn, type SQL } from 'drizzle-orm';
import { pgArray } from './pg-array.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `column = any($1::uuid[])`: a list of ids bound as ONE parameter. Drizzle's `inArray`
 * binds one parameter per element, and the PostgreSQL protocol stops at 65,535, so an
 * audience of 70,000 contacts would fail. Every element is checked to be a UUID first
 * (callers pass ids that schemas already validated; this is the last guard, not the first).
 */
export function inUuidList(column: AnyColumn, ids: readonly string[]): SQL {
  if (ids.length === 0) return sql`false`;
  for (const id of ids) if (!UUID.test(id)) throw new TypeError('inUuidList: not a UUID');
  return sql`${column} = any(${pgArray(ids)}::uuid[])`;
}
