import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/*
 * Sends parked by recovery because their mailbox could not be searched (RECOVERY.md,
 * "Failures" and "Reconnect"), for campaign sends (`campaign_sends`) and 1:1 sends
 * (`messages`) alike.
 *
 * Recovery takes such a send over for UNSEARCHABLE_RECHECK_MS and leaves it `sending`. When
 * the mailbox is reconnected, those sends are made due at once — but only those: a send held
 * by a worker that is sending it right now (a live claim) must keep its lease, or recovery
 * could search before Gmail has the message, not find it, and queue it again: a duplicate.
 * Nothing in a live claim's lease tells it apart from a parked one (same columns, a lease in
 * the future; in the same process even the same owner), so parking marks the row:
 * `error_code = 'mailbox_unsearchable'`. error_code rather than a new column, because on a
 * `sending` row it is read by nothing (error codes are shown for `failed` rows only: the
 * message's `outcome_unknown`, the `message.failed` webhook, the daily budget's count) and it
 * already says why a send waits (`outcome_unknown`); the parked send keeps its looks count
 * (`resolve_looks`), which is what recovery goes on. The mark lives only while the row is
 * parked: every statement that gives a row a lease clears it (the claim and a retry's
 * renewal, a take-over to search) or overwrites error_code (a look rescheduled, requeue,
 * sent, failed), and a row is `queued` again only through requeue — so a live claim never
 * carries it.
 */

/** error_code of a `sending` row that recovery parked because its mailbox could not be searched. */
export const MAILBOX_UNSEARCHABLE = 'mailbox_unsearchable';

/** error_code without the parked mark (any other code kept): for statements that give a row a live lease. */
export const withoutParkedMark = (column: SQL = sql`error_code`): SQL => sql`nullif(${column}, ${MAILBOX_UNSEARCHABLE})`;

/** Which mailbox a send is parked for (null: none to wait for; the send is parked unconditionally). */
export interface ParkedFor {
  mailboxId: string | null;
}

/**
 * The parts of recovery's take-over that differ when it parks the send: its error_code (the
 * mark, or the mark cleared), and, when parking, that the mailbox still cannot be searched.
 * That is read in the take-over's statement under a share lock on the mailbox's row, which
 * the reconnect's transaction updates: recovery read the mailbox as `needs_reconnect` a moment
 * ago, but if a reconnect committed since (or commits while this waits for the lock), the send
 * is not parked (the take-over changes nothing and the next pass searches it); if this
 * statement parks first, the reconnect waits for it, and the release after the reconnect's
 * commit finds the mark. Without this a send parked just after a reconnect would wait the full
 * UNSEARCHABLE_RECHECK_MS.
 */
export function takeOverTerms(parkedFor: ParkedFor | undefined): { errorCode: SQL; condition: SQL } {
  if (!parkedFor) return { errorCode: withoutParkedMark(), condition: sql`true` };
  return {
    errorCode: sql`${MAILBOX_UNSEARCHABLE}`,
    condition: parkedFor.mailboxId
      ? sql`(select m.status from mailboxes m where m.id = ${parkedFor.mailboxId}::uuid for share) is distinct from 'active'`
      : sql`true`,
  };
}

/**
 * The mailbox was reconnected: its parked sends — campaign sends of its campaigns and its 1:1
 * sends, `sending` with the mark — are due for recovery at `at`, one statement per table. Run
 * right after the reconnect's transaction commits (mailboxes.service.ts: inside it, it would
 * hold the mailbox's row while waiting for send rows a purge holds). Rows without the
 * mark, live claims among them, are not touched. Both read the few `sending` rows through
 * partial indexes (`campaign_sends_sending_idx`, by id since migration 0036; `messages_lease_idx`).
 * Returns how many sends became due.
 */
export async function releaseParkedSends(db: Db, mailboxId: string, at: Date): Promise<number> {
  const due = sql`${at.toISOString()}::timestamptz`;
  const [campaign] = rowsOf<{ n: number }>(
    await db.execute(sql`
      with released as (
        update campaign_sends s set lease_expires_at = ${due}
        where s.status = 'sending' and s.error_code = ${MAILBOX_UNSEARCHABLE} and s.lease_expires_at > ${due}
          and exists (select 1 from campaigns c where c.id = s.campaign_id and c.mailbox_id = ${mailboxId}::uuid)
        returning 1)
      select count(*)::int as n from released`),
  );
  const [oneToOne] = rowsOf<{ n: number }>(
    await db.execute(sql`
      with released as (
        update messages set lease_expires_at = ${due}
        where status = 'sending' and error_code = ${MAILBOX_UNSEARCHABLE} and lease_expires_at > ${due} and mailbox_id = ${mailboxId}::uuid
        returning 1)
      select count(*)::int as n from released`),
  );
  return Number(campaign?.n ?? 0) + Number(oneToOne?.n ?? 0);
}
