import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { DAY_MS } from '../time.js';

/** Rows deleted per transaction: short locks, bounded memory, however much is due. */
const PURGE_BATCH = 5_000;

/**
 * The one way audit rows leave the database: past their retention (AUDIT_RETENTION_DAYS).
 * The table's DELETE trigger (migration 0012) refuses every delete except inside a
 * transaction that set `inboxtrail.audit_purge_before`, and then only of rows older than it;
 * this sets it (transaction-local) and deletes in batches.
 */
export function createAuditRetention(deps: { db: Db; retentionDays: number; now?: () => Date }) {
  const now = deps.now ?? (() => new Date());
  return {
    /** Deletes every audit row older than the retention period; returns how many. */
    async purgeExpired(): Promise<number> {
      const before = new Date(now().getTime() - deps.retentionDays * DAY_MS).toISOString();
      let total = 0;
      for (;;) {
        const deleted = await deps.db.transaction(async (tx) => {
          await tx.execute(sql`select set_config('inboxtrail.audit_purge_before', ${before}, true)`);
          // The batch's rows by their place in the table (a TID scan: a page each, no index
          // descent); audit rows are never updated, so the place found is the row's. As
          // `id in (select …)` the server joined the batch to a scan of the whole log, once per
          // batch: 660,000 rows read to delete 39,000 of 100,000 (BENCHMARKS.md, "Query plans
          // at 100k: the audit").
          const result = (await tx.execute(sql`
            delete from audit_log where ctid = any(array(
              select ctid from audit_log where at < ${before}::timestamptz limit ${PURGE_BATCH}
            )) returning 1 as one`)) as unknown as { rows: unknown[] };
          return result.rows.length;
        });
        total += deleted;
        if (deleted < PURGE_BATCH) return total;
      }
    },
  };
}

export type AuditRetention = ReturnType<typeof createAuditRetention>;
