import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

const iso = (at: Date) => sql`${at.toISOString()}::timestamptz`;

/** The statements of the retention sweep (P-15 and the consent-history period). */
export function createRetentionRepo(db: Db) {
  return {
    /**
     * Consent records older than `cutoff` that a newer record of the same contact replaced.
     * A contact's latest record is its consent today and always stays, however old.
     */
    async deleteSupersededConsents(cutoff: Date): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`
          with d as (
            delete from consents c where c.at < ${iso(cutoff)} and exists (
              select 1 from consents n
              where n.workspace_id = c.workspace_id and n.contact_id = c.contact_id and (n.at, n.id) > (c.at, c.id))
            returning 1)
          select count(*)::int as n from d`),
      );
      return Number(row?.n ?? 0);
    },

    /** Live accounts unused since `inactiveSince` and not warned yet. */
    async accountsToWarn(inactiveSince: Date, limit: number): Promise<{ id: string; email: string; lastActiveAt: Date }[]> {
      return rowsOf<{ id: string; email: string; last_active_at: string | Date }>(
        await db.execute(sql`
          select id, email, last_active_at from users
          where deleted_at is null and inactivity_warned_at is null and last_active_at <= ${iso(inactiveSince)}
          order by last_active_at limit ${limit}`),
      ).map((r) => ({ id: String(r.id), email: String(r.email), lastActiveAt: new Date(r.last_active_at) }));
    },

    /** Records the warning, unless the account was used in between (then it is not due any more). */
    async markWarned(userId: string, at: Date, inactiveSince: Date): Promise<boolean> {
      return (
        rowsOf(
          await db.execute(sql`
            update users set inactivity_warned_at = ${iso(at)}
            where id = ${userId}::uuid and deleted_at is null and inactivity_warned_at is null and last_active_at <= ${iso(inactiveSince)}
            returning id`),
        ).length > 0
      );
    },

    /** Accounts unused since `inactiveSince` whose warning went out before `warnedBefore`: due for closure. */
    async accountsToClose(inactiveSince: Date, warnedBefore: Date, limit: number): Promise<string[]> {
      return rowsOf<{ id: string }>(
        await db.execute(sql`
          select id from users
          where deleted_at is null and last_active_at <= ${iso(inactiveSince)} and inactivity_warned_at <= ${iso(warnedBefore)}
          order by last_active_at limit ${limit}`),
      ).map((r) => String(r.id));
    },
  };
}

export type RetentionRepo = ReturnType<typeof createRetentionRepo>;
