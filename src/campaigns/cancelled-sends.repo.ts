import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { queuedSendsSql, unfinishedSendsSql } from './send-counts.repo.js';

/*
 * The queued sends of a cancelled campaign become `skipped` (reason `cancelled`), a batch at a
 * time (cancelled-sends.ts runs the batches). A campaign being skipped carries
 * `skipping_queued_since` (set by the cancel's transaction) until none of its sends is queued
 * or in flight (migration 0031).
 */
export function createCancelledSendsRepo(db: Db) {
  return {
    /**
     * One batch, one short statement: up to `limit` of the campaign's queued sends, from the
     * front of the index of queued rows (campaign, due_at, id; migration 0029), so a batch reads
     * its rows and stops. SKIP LOCKED: a row a worker's claim or reservation holds right now is
     * left for a later batch rather than waited for — so this never waits on a claim (a claim
     * locks its rows in id order, these are taken in due order: waiting could deadlock), and
     * such a row is still safe meanwhile, since the claim sends nothing for a campaign that is
     * not `sending`. Only a cancelled campaign's rows. The count skipped.
     */
    async skipBatch(campaignId: string, limit: number): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`
          with skipped as (
            update campaign_sends s set status = 'skipped', skip_reason = 'cancelled', lease_owner = null, lease_expires_at = null
            where s.id = any(array(
              select id from campaign_sends
              where campaign_id = ${campaignId}::uuid and status = 'queued'
                and exists (select 1 from campaigns c where c.id = ${campaignId}::uuid and c.status = 'cancelled')
              order by due_at, id
              limit ${limit}
              for update skip locked))
              and s.status = 'queued'
            returning 1)
          select count(*)::int as n from skipped`),
      );
      return Number(row?.n ?? 0);
    },

    /**
     * Campaigns being skipped that have sends queued, longest first: the partial index's
     * entries, each with its counters (a few rows). A campaign whose mark waits only for sends in
     * flight is not among them — such a send may stay in flight for long (its mailbox waiting to
     * be reconnected), and those campaigns, first in the order, would otherwise take every
     * sweep's places and budget from a newer cancel.
     */
    async pending(limit: number): Promise<string[]> {
      const rows = rowsOf<{ id: string }>(
        await db.execute(sql`
          select c.id from campaigns c where c.skipping_queued_since is not null and ${queuedSendsSql(sql`c.id`)} > 0
          order by c.skipping_queued_since limit ${limit}`),
      );
      return rows.map((r) => r.id);
    },

    /**
     * Clears the mark of the campaigns being skipped (all, or this one) that have nothing queued
     * or in flight any more, in one statement (each one's counters, a few rows). Not before: a
     * send in flight may still be handed back to the queue, or queue its next step when it is
     * recorded — so this is also how a mark waiting for sends in flight at the cancel ends. How
     * many marks it cleared.
     */
    async finishDone(campaignId?: string): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`
          with done as (
            update campaigns c set skipping_queued_since = null
            where c.skipping_queued_since is not null and ${unfinishedSendsSql(sql`c.id`)} = 0${campaignId ? sql` and c.id = ${campaignId}::uuid` : sql``}
            returning 1)
          select count(*)::int as n from done`),
      );
      return Number(row?.n ?? 0);
    },
  };
}

export type CancelledSendsRepo = ReturnType<typeof createCancelledSendsRepo>;
