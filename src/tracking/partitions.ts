import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/*
 * tracking_events is partitioned by month of `at` (UTC), in SQL (migration 0018): monthly
 * partitions `tracking_events_pYYYY_MM` plus `tracking_events_default`, which takes any
 * event no monthly partition covers, so nothing is ever refused. A scheduled job keeps the
 * current month and the next ones created ahead; creating a month whose rows already sit in
 * the default partition moves them into it (the SQL function does this under one lock).
 */

/** The current month and the two after it: a daily job has weeks of slack before the default partition is needed. */
export const PARTITION_MONTHS_AHEAD = 3;

/** Creates the missing monthly partitions from `now`'s month on; returns how many it created. Idempotent; safe from several processes. */
export async function ensureTrackingPartitions(db: Db, options: { now?: Date; months?: number } = {}): Promise<number> {
  const now = options.now ?? new Date();
  const [row] = rowsOf<{ created: number }>(
    await db.execute(sql`select tracking_events_ensure_partitions(${now.toISOString()}::timestamptz, ${options.months ?? PARTITION_MONTHS_AHEAD}::int) as created`),
  );
  return Number(row?.created ?? 0);
}

/** The partitions of tracking_events by name: the monthly ones (oldest first) and the default. */
export async function trackingPartitions(db: Db): Promise<string[]> {
  const rows = rowsOf<{ name: string }>(
    await db.execute(sql`
      select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'tracking_events'::regclass order by 1`),
  );
  return rows.map((r) => String(r.name));
}
