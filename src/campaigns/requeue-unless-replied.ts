import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { holdOrderLock } from './auto-reply-hold-sql.js';
import { completeIfDone } from './campaigns.repo.js';
import { earlierStepAnsweredSql } from './gate-sql.js';
import { ts, type SendLease } from './ledger-fence.js';

/*
 * A claimed send that goes back to the queue unsent: Gmail refused it (429, a quota 403, a dead
 * token: send-worker.ts), the worker handed it back (shutdown, a paused campaign), or recovery
 * found no copy of it (send-recovery.ts). A person's reply recorded while it was claimed did not
 * skip it — sync skips the recipient's *queued* later steps (follow-ups.repo.ts
 * skipFollowUps) — so queued again it waited until its new due time (Retry-After, or
 * 30 s × 2^(attempt−1): up to hours) for the gate to skip it, the campaign `sending` with a
 * follow-up queued for someone who had answered. Such a send is written `skipped` (`replied`)
 * instead, by the gate's own rule (gate-sql.ts earlierStepAnsweredSql), and the campaign
 * completes if nothing is left (completeIfDone).
 */

/** The ledger row being requeued, as the `update campaign_sends` statement that changes it names it (unaliased). */
const requeued = { campaignId: sql`campaign_sends.campaign_id`, recipientId: sql`campaign_sends.recipient_id`, step: sql`campaign_sends.step` };

/**
 * SQL: the SET of a requeue due `dueAt` — `queued`, or `skipped` (`replied`) when the recipient
 * replied to an earlier step. For a fenced update of `campaign_sends` (ledger-fence.ts); the
 * reply is read once, in one row subquery (a multi-column assignment).
 */
export function requeuedUnlessRepliedSet(dueAt: Date, errorCode: string): SQL {
  return sql`(status, skip_reason, error_code) = (
      select (case when a.replied then 'skipped' else 'queued' end)::send_status, case when a.replied then 'replied' end, case when a.replied then null else ${errorCode} end
      from (select campaign_sends.step > 0 and ${earlierStepAnsweredSql(requeued, 'reply')} as replied) a),
    due_at = ${ts(dueAt)}, message_id = null, lease_owner = null, lease_expires_at = null, resolve_looks = 0`;
}

/**
 * Runs a requeue (`change`: a fenced statement with requeuedUnlessRepliedSet; true when the lease
 * still held) in a transaction, after the recipient's address lock on a server (holdOrderLock:
 * the reply's transaction takes it before it skips the queued steps, the gate before its claim) —
 * so either the reply committed first and the requeue's statement sees it, or the reply's skip
 * comes after and finds the row queued. Without it, a reply committed while the requeue's
 * statement ran was seen by neither. Then, the send written skipped, the campaign's row (after the
 * address lock, as the reply and the gate take them): completed if nothing is left.
 */
export async function requeueUnlessReplied(db: Db, lease: SendLease, serializedEngine: boolean, change: (tx: Db) => Promise<boolean>): Promise<boolean> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    if (!serializedEngine) await holdOrderLock.ofSends(tx, [lease.id]);
    if (!(await change(tx))) return false;
    const [row] = rowsOf<{ campaign_id: string; skipped: boolean }>(
      await tx.execute(sql`select campaign_id, status = 'skipped' as skipped from campaign_sends where id = ${lease.id}::uuid`),
    );
    if (row?.skipped) await completeIfDone(tx, String(row.campaign_id), new Date());
    return true;
  });
}
