import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { holdOrderLock } from './auto-reply-hold-sql.js';
import { completeIfDone } from './campaigns.repo.js';
import { mayStillSendSql, refusedNowSql, type DecidedStep } from './gate-sql.js';
import { ts, type SendLease } from './ledger-fence.js';

/*
 * A claimed send that goes back to the queue unsent: Gmail refused it (429, a quota 403, a dead
 * token: send-worker.ts), the worker handed it back (shutdown, a paused campaign), or recovery
 * found no copy of it (send-recovery.ts). What ended the recipient's sequence while it was
 * claimed — a person's reply, a suppression entry (a bounce, an opt-out, a user's), a consent
 * withdrawal, a bounce of an earlier step — did not skip it: those skip the recipient's *queued*
 * steps (follow-ups.repo.ts skipFollowUps). Queued again, it waited until its new due time
 * (Retry-After, or 30 s × 2^(attempt−1): up to hours) for the gate to skip it, the campaign
 * `sending` meanwhile. Such a send is written `skipped` instead, with the reason the gate's own
 * verdict gives now (gate-sql.ts refusedNowSql), and the campaign completes if nothing is left
 * (completeIfDone).
 *
 * A first step too: its standing reasons (suppressed, contact deleted or moved, no consent) are the
 * gate's verdict at its next claim, as they are at the re-check before a retry, which already
 * writes a claimed first step `skipped` (send-ledger-claim.repo.ts recheck). The rule that leaves
 * first steps to the gate (skipFollowUps) is about queued rows the campaign's own run reaches;
 * a claimed one is being decided now, and queued again it only waits, up to hours, for that
 * same verdict.
 *
 * Only while the campaign may still send (gate-sql.ts mayStillSendSql): a cancelled campaign's
 * send goes back `queued` for the cancel's sweep (`cancelled`), as skipFollowUps leaves it.
 */

/** The ledger row being requeued, as the `update campaign_sends` statement that changes it names it (unaliased). */
const requeued: DecidedStep = {
  workspaceId: sql`campaign_sends.workspace_id`,
  campaignId: sql`campaign_sends.campaign_id`,
  recipientId: sql`campaign_sends.recipient_id`,
  step: sql`campaign_sends.step`,
  email: sql`campaign_sends.email`,
  contactId: sql`campaign_sends.contact_id`,
};

/**
 * SQL: the SET of a requeue due `dueAt` — `queued`, or `skipped` with the gate's reason when it
 * would refuse the send now. For a fenced update of `campaign_sends` (ledger-fence.ts); the
 * verdict is read once, in one row subquery (a multi-column assignment), with its campaign's
 * topic and kind (read, not locked: the campaign row is locked only when it completes).
 */
export function requeuedUnlessRefusedSet(dueAt: Date, errorCode: string): SQL {
  const refused = refusedNowSql(requeued, { topic: sql`rc.topic`, consentNeeded: sql`rc.kind = 'marketing'` });
  return sql`(status, skip_reason, error_code) = (
      select (case when a.reason is null then 'queued' else 'skipped' end)::send_status, a.reason, case when a.reason is null then ${errorCode} end
      from (select (select ${refused} from campaigns rc
                    where rc.id = campaign_sends.campaign_id and ${mayStillSendSql(sql`rc`)}) as reason) a),
    due_at = ${ts(dueAt)}, message_id = null, lease_owner = null, lease_expires_at = null, resolve_looks = 0`;
}

/**
 * Runs a requeue (`change`: a fenced statement with requeuedUnlessRefusedSet; true when the lease
 * still held) in a transaction, after the recipient's address lock on a server (holdOrderLock:
 * a reply's transaction, a suppression entry's write and a consent record take it before they
 * skip the queued steps, the gate before its claim) — so either the reply, entry or withdrawal
 * committed first and the requeue's statement sees it, or its skip comes after and finds the row
 * queued. Without it, one committed while the requeue's statement ran was seen by neither. Then,
 * the send written skipped, the campaign's completion question (completeIfDone, after the address
 * lock, as the reply takes it): completed if nothing is left.
 */
export async function requeueUnlessRefused(db: Db, lease: SendLease, serializedEngine: boolean, change: (tx: Db) => Promise<boolean>): Promise<boolean> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    if (!serializedEngine) await holdOrderLock.ofSends(tx, [lease.id]);
    if (!(await change(tx))) return false;
    const [row] = rowsOf<{ campaign_id: string; skipped: boolean }>(
      await tx.execute(sql`select campaign_id, status = 'skipped' as skipped from campaign_sends where id = ${lease.id}::uuid`),
    );
    if (row?.skipped) await completeIfDone(tx, [String(row.campaign_id)], new Date());
    return true;
  });
}
