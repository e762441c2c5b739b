import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { SEND_OUTCOME_UNKNOWN } from '../gmail/gmail-client.js';
import { campaignSendOutcomeCtes } from '../webhooks/facts.js';
import { changeLeasedSend, fence, ts, type SendLease } from './ledger-fence.js';
import { takeOverTerms, type ParkedFor } from './parked-sends.js';
import { requeuedUnlessRefusedSet, requeueUnlessRefused } from './requeue-unless-refused.js';

/*
 * The send ledger's side of recovery (send-recovery.ts; RECOVERY.md "Honest outcomes"): sends
 * whose lease expired, taken over by a new owner, left waiting for the next look at the
 * mailbox, or queued again when Gmail has no copy. Part of the ledger repo (send-ledger.repo.ts).
 */
export function createLedgerRecoveryQueries(db: Db, options: { serializedEngine?: boolean } = {}) {
  /**
   * A verdict that gives way to a record sync writes on the attempt's row (gmail/sent-copy.ts):
   * `messageChange` (a delete or an update of `messages`) runs first, only while that row holds
   * no Gmail id, and locks the ledger row before it (the order purges and outcomes lock in), so
   * a record being written now is waited for and seen; the ledger (`ledgerSet`, then `alsoDo`'s
   * CTEs) follows that change, or no message row at all. False when the row was seen (or the
   * lease lost). `on`: the transaction to run in.
   */
  async function unlessSeen(on: Db, lease: SendLease, messageChange: SQL, ledgerSet: SQL, alsoDo: SQL = sql``): Promise<boolean> {
    const row = sql`${lease.messageRowId}::uuid`;
    const [changed] = rowsOf<{ n: number }>(
      await on.execute(sql`
        with m as (${messageChange} where id = ${row} and gmail_message_id is null and exists (select 1 from campaign_sends where ${fence(lease)} for update) returning id),
        ledger as (update campaign_sends set ${ledgerSet}
          where ${fence(lease)} and (exists (select 1 from m) or not exists (select 1 from messages where id = ${row}))
          returning id, workspace_id, campaign_id, step, contact_id, email, message_id)${alsoDo}
        select count(*)::int as n from ledger`),
    );
    return Number(changed?.n ?? 0) > 0;
  }

  return {
    /**
     * Recovery's "not sent": `requeue` — `skipped` with the gate's reason if it would refuse the
     * send now, a reply, a suppression, a consent withdrawal or a bounce recorded meanwhile
     * (requeue-unless-refused.ts) —, unless sync recorded a Gmail copy on the attempt's row
     * (gmail/sent-copy.ts): then false (`unlessSeen`).
     */
    requeueUnsent: (lease: SendLease, dueAt: Date) =>
      requeueUnlessRefused(db, lease, options.serializedEngine === true, (tx) =>
        unlessSeen(tx, lease, sql`delete from messages`, requeuedUnlessRefusedSet(dueAt, 'recovered_unsent')),
      ),

    /**
     * Recovery's "cannot tell" (a last look that could not read back to the claim; a mailbox
     * that cannot be read): `failed/outcome_unknown`, never sent again, with its
     * `message.failed` event — unless sync recorded a Gmail copy on the attempt's row: then
     * false (`unlessSeen`).
     */
    markUnknownUnseen: (lease: SendLease) =>
      unlessSeen(
        db,
        lease,
        sql`update messages set status = 'failed', error_code = ${SEND_OUTCOME_UNKNOWN}`,
        sql`status = 'failed', error_code = ${SEND_OUTCOME_UNKNOWN}, lease_owner = null, lease_expires_at = null`,
        campaignSendOutcomeCtes('message.failed', new Date(), SEND_OUTCOME_UNKNOWN),
      ),

    /**
     * Gmail gave no clear answer: the send stays `sending` under this lease until `lookAt`,
     * when recovery (in any process) searches the mailbox for it. Never retried before that.
     */
    async awaitResolution(lease: SendLease, lookAt: Date, looks: number): Promise<boolean> {
      return changeLeasedSend(db, lease, sql`error_code = 'outcome_unknown', resolve_looks = ${looks}, lease_expires_at = ${ts(lookAt)}`);
    },

    /**
     * Sends in `sending` whose lease has expired: their worker crashed, or their outcome is
     * waiting for a mailbox search. Rows claimed before leases existed count after two minutes.
     */
    async expiredLeases(now: Date, limit = 100) {
      return rowsOf<{
        id: string;
        workspace_id: string;
        campaign_id: string;
        step: number;
        contact_id: string | null;
        recipient_id: string;
        email: string;
        rfc822_message_id: string;
        message_id: string | null;
        attempts: number;
        lease_owner: string | null;
        resolve_looks: number;
      }>(
        await db.execute(sql`
          select id, workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, message_id, attempts, lease_owner, resolve_looks
          from campaign_sends
          where status = 'sending'
            and (lease_expires_at < ${ts(now)} or (lease_expires_at is null and claimed_at < ${ts(new Date(now.getTime() - 120_000))}))
          order by lease_expires_at nulls first
          limit ${limit}`),
      ).map((r) => ({ ...r, attempts: Number(r.attempts), resolve_looks: Number(r.resolve_looks) }));
    },

    /**
     * Takes over an expired lease (only if it is still the expired one seen): from here on
     * this worker's lease fences the row; the old owner, if alive, can change nothing.
     * `parkedFor`: the send is parked until its mailbox can be searched (parked-sends.ts).
     */
    async takeOver(input: { id: string; oldOwner: string | null; attempt: number; owner: string; now: Date; until: Date; parkedFor?: ParkedFor }): Promise<boolean> {
      const parking = takeOverTerms(input.parkedFor);
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`
          with ledger as (
            update campaign_sends set lease_owner = ${input.owner}, lease_expires_at = ${ts(input.until)}, error_code = ${parking.errorCode}
            where id = ${input.id}::uuid and status = 'sending' and lease_owner is not distinct from ${input.oldOwner}
              and attempts = ${input.attempt} and coalesce(lease_expires_at < ${ts(input.now)}, true) and ${parking.condition}
            returning id)
          select count(*)::int as n from ledger`),
      );
      return Number(row?.n ?? 0) > 0;
    },
  };
}
