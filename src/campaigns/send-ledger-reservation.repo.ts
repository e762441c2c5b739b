import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import type { CampaignRow } from './campaigns.repo.js';
import { ts } from './ledger-fence.js';

/*
 * The send ledger's reservation (SEND-LEDGER.md, "Reservation"): a worker's soft mark on the
 * queued rows of its next batch, and its release at a shutdown. Part of the ledger repo
 * (send-ledger.repo.ts).
 */

/** A queued send this worker reserved for its next batch (still `queued`: nothing claimed yet). */
export interface SendCandidate {
  id: string;
  campaignId: string;
  step: number;
  contactId: string | null;
  recipientId: string;
  email: string;
  rfc822MessageId: string;
  /** Attempts made before this one. */
  attempts: number;
}

export function createLedgerReservationQueries(db: Db) {
  return {
    /**
     * Reserves up to `limit` due sends of one campaign for this worker's next batch: a soft
     * mark on rows that stay `queued` (a crash loses nothing; the mark just expires), so
     * that two workers do not both pay quota for the same row. SKIP LOCKED: rows another
     * worker is reserving right now are left to it. Earliest due first, ties by id, read from
     * the front of the index of queued rows (migration 0029): a launch gives every row one
     * due_at, and without an index holding that order each reservation sorted all of the
     * campaign's queued rows to keep the first batch (BENCHMARKS.md, "eighth pass"). The batch's
     * ids are one array (`= any(array(…))`), so the update finds them by key: as `in (…)` the
     * planner may join them against a read of the whole ledger. The rows come back in the
     * order they are due (RETURNING gives them as stored).
     */
    async reserveDue(campaign: CampaignRow, owner: string, limit: number, now: Date, until: Date): Promise<SendCandidate[]> {
      const rows = rowsOf<{
        id: string;
        step: number;
        contact_id: string | null;
        recipient_id: string;
        email: string;
        rfc822_message_id: string;
        attempts: number;
      }>(
        await db.execute(sql`
          with reserved as (
            update campaign_sends s set lease_owner = ${owner}, lease_expires_at = ${ts(until)}
            where s.id = any(array(
              select id from campaign_sends
              where campaign_id = ${campaign.id} and status = 'queued' and due_at <= ${ts(now)}
                and (lease_owner is null or lease_owner = ${owner} or lease_expires_at < ${ts(now)})
              order by due_at, id
              limit ${limit}
              for update skip locked))
            returning s.id, s.step, s.contact_id, s.recipient_id, s.email, s.rfc822_message_id, s.attempts, s.due_at)
          select * from reserved order by due_at, id`),
      );
      return rows.map((r) => ({
        id: r.id,
        campaignId: campaign.id,
        step: r.step,
        contactId: r.contact_id,
        recipientId: r.recipient_id,
        email: r.email,
        rfc822MessageId: r.rfc822_message_id,
        attempts: Number(r.attempts),
      }));
    },

    /**
     * Gives back reservations of rows never claimed (a batch's end, a shutdown): another worker
     * may take them at once. The ids are one array parameter: a shutdown gives back every batch
     * of the process at once (one per mailbox sending), and one parameter per id met the
     * protocol's limit of 65,535 past some 1,300 mailboxes — the statement failed and every
     * reservation stayed held for its lease.
     */
    async releaseReservations(owner: string, ids: string[]): Promise<void> {
      if (ids.length === 0) return;
      await db.execute(sql`
        update campaign_sends set lease_owner = null, lease_expires_at = null
        where status = 'queued' and lease_owner = ${owner} and id = any(${pgArray(ids)}::uuid[])`);
    },
  };
}
