import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';

/*
 * P-14: the raw facts of a tracking hit (IP address, user agent) are kept for a limited
 * window. After it, the user agent is dropped and the address is cut to its network
 * (IPv4 /24, IPv6 /48, stored as "203.0.113.0/24"), which keeps rough geography and
 * nothing that points at a person. Type, time, classification and reasons stay, so
 * stats do not change.
 */

export const DEFAULT_RAW_RETENTION_DAYS = 30;

/**
 * Truncates the raw facts of events older than `retentionDays` before `now`, in batches
 * (short statements, no long lock). Returns how many events were changed. Idempotent.
 */
export async function truncateRawTrackingFacts(db: Db, options: { now?: Date; retentionDays?: number; batchSize?: number } = {}): Promise<number> {
  const now = options.now ?? new Date();
  const days = options.retentionDays ?? DEFAULT_RAW_RETENTION_DAYS;
  const batchSize = options.batchSize ?? 5_000;
  const cutoff = new Date(now.getTime() - days * 86_400_000);
  let total = 0;
  for (;;) {
    const result = (await db.execute(sql`
      -- Oldest first: the order of the raw-facts index (partial: a swept event leaves it), so a
      -- batch reads its own rows even when a whole month is due. Unordered, the server read the
      -- month by a scan from its start once per batch, past the events earlier batches swept.
      with due as (
        select id, at from tracking_events
        where at < ${cutoff.toISOString()}::timestamptz
          and (user_agent is not null or (ip is not null and position('/' in ip) = 0))
        order by at
        limit ${batchSize}
      ), changed as (
        update tracking_events e
        set user_agent = null,
            ip = case
              when e.ip is null or position('/' in e.ip) > 0 then e.ip
              when family(e.ip::inet) = 4 then network(set_masklen(e.ip::inet, 24))::text
              else network(set_masklen(e.ip::inet, 48))::text
            end
        -- (id, at) is the partitioned table's key; the cutoff again lets the planner skip later months.
        from due where e.id = due.id and e.at = due.at and e.at < ${cutoff.toISOString()}::timestamptz
        returning 1
      )
      select count(*)::int as n from changed`)) as unknown as { rows: { n: number }[] };
    const changed = Number(result.rows[0]?.n ?? 0);
    total += changed;
    if (changed < batchSize) return total;
  }
}
