import { and, eq, isNull, lte, or, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { mailboxes, type ResyncCheckpoint, type SyncGap } from '../db/schema.js';
import { describeSyncGap, type SyncHealthCounts } from './sync-health.js';

/**
 * The columns that add a pass's counts to a mailbox: each counter added in place, so two
 * processes syncing at once never lose each other's counts.
 */
function healthAdded(seen: number, health: SyncHealthCounts | undefined) {
  const added = Object.entries(health ?? {}).filter(([, n]) => n > 0);
  return {
    messagesSeen: sql`${mailboxes.messagesSeen} + ${seen}`,
    ...(added.length > 0
      ? {
          syncHealth: sql`${mailboxes.syncHealth} || jsonb_build_object(${sql.join(
            added.map(([key, n]) => sql`${key}::text, coalesce((${mailboxes.syncHealth} ->> ${key}::text)::int, 0) + ${n}::int`),
            sql`, `,
          )})`,
        }
      : {}),
  };
}
/**
 * What a sync pass records on its mailbox: counts, history, checkpoints, failures and push
 * watches. Part of the sync repo (sync.repo.ts); apart because none of it reads mail.
 */
export function syncStateQueries(db: Db) {
  return {
    /** A failed pass's counts of what it stored (sync-pass.ts processIds); nothing else of the mailbox moves. */
    async recordSyncHealth(mailboxId: string, input: { seen: number; health: SyncHealthCounts }): Promise<void> {
      await db.update(mailboxes).set(healthAdded(input.seen, input.health)).where(eq(mailboxes.id, mailboxId));
    },

    /**
     * Success: counters add up, and history moves forward only (a second process, or a push
     * racing a poll, never moves it back). No `historyId`: history is left as it is.
     */
    /**
     * With `leaseOwner`, only while that process holds the mailbox's sync lease (sync-leases.ts),
     * checked in this very statement: false when another took it (nothing recorded).
     */
    async recordSyncSuccess(
      mailboxId: string,
      input: { historyId?: string; seen: number; at: Date; health?: SyncHealthCounts; gap?: SyncGap; leaseOwner?: string },
    ): Promise<boolean> {
      const next = input.historyId && /^\d+$/.test(input.historyId) ? input.historyId : undefined;
      const leaseHeld = input.leaseOwner
        ? sql`exists (select 1 from mailbox_limits l where l.mailbox_id = ${mailboxes.id} and l.sync_owner = ${input.leaseOwner})`
        : undefined;
      const recorded = await db
        .update(mailboxes)
        .set({
          lastSyncAt: input.at,
          // A gap is said in the pass's error until the next pass, and kept in lastSyncGap.
          lastSyncError: input.gap ? describeSyncGap(input.gap) : null,
          resyncCheckpoint: null,
          ...(input.gap ? { lastSyncGap: input.gap } : {}),
          ...healthAdded(input.seen, input.health),
          ...(next
            ? {
                // CASE evaluates in order, so the numeric cast only meets a numeric string.
                historyId: sql`case when ${mailboxes.historyId} is null then ${next}
                  when ${mailboxes.historyId} !~ '^[0-9]+$' then ${next}
                  when ${mailboxes.historyId}::numeric < ${next}::numeric then ${next}
                  else ${mailboxes.historyId} end`,
              }
            : {}),
        })
        .where(and(eq(mailboxes.id, mailboxId), leaseHeld))
        .returning({ id: mailboxes.id });
      return recorded.length > 0;
    },

    /** How far the running resync got (sync-pass.ts): kept if the pass fails, cleared by a good one. */
    async recordResyncCheckpoint(mailboxId: string, checkpoint: ResyncCheckpoint): Promise<void> {
      await db.update(mailboxes).set({ resyncCheckpoint: checkpoint }).where(eq(mailboxes.id, mailboxId));
    },

    /** Failure: the reason is shown to the mailbox's workspace, and when (sequences wait until a pass succeeds); history and counters stay. */
    async recordSyncFailure(mailboxId: string, reason: string, at: Date): Promise<void> {
      await db.update(mailboxes).set({ lastSyncError: reason, lastSyncFailedAt: at }).where(eq(mailboxes.id, mailboxId));
    },

    /** Syncing mailboxes whose push watch is missing or expires before `before`. */
    async listWatchesDue(before: Date) {
      return db
        .select()
        .from(mailboxes)
        .where(
          and(
            eq(mailboxes.syncEnabled, true),
            eq(mailboxes.status, 'active'),
            or(isNull(mailboxes.watchExpiresAt), lte(mailboxes.watchExpiresAt, before)),
          ),
        );
    },

    async recordWatch(mailboxId: string, expiresAt: Date | null): Promise<void> {
      await db.update(mailboxes).set({ watchExpiresAt: expiresAt }).where(eq(mailboxes.id, mailboxId));
    },
  };
}
