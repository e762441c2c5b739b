import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { holdOrderLock } from './auto-reply-hold-sql.js';
import { completeIfDone } from './campaigns.repo.js';

/*
 * Sequence rules that mail read from the mailbox applies to queued follow-ups. Written by
 * the sync inside its own transaction (the event and its effect commit together). A person's
 * reply ends the recipient's sequence at once (skipRepliedFollowUps); an out-of-office holds it
 * (deferFollowUps). A bounce needs nothing here: the claim checks mail_events before each step
 * (and a hard bounce's suppression is checked there too). The gate still reads the reply before
 * each step (gate-sql.ts): a step queued or claimed beside the reply is skipped there.
 */
export function createFollowUpRules(db: Db) {
  return {
    /**
     * First in the transaction that records a reply (a person's, or an automatic one that holds)
     * to one of our messages, before its event: the answered recipient's lock (holdOrderLock,
     * auto-reply-hold-sql.ts). A sent record queuing that recipient's next step right now
     * commits before the skip or deferral reads the queued steps, or starts after this commits
     * and reads the reply. Before the event row: its key locks the answered message's row, which
     * a contact's purge deletes under the address lock — taken after the event, the two could
     * deadlock.
     */
    async lockForReply(workspaceId: string, messageId: string): Promise<void> {
      await holdOrderLock.ofMessage(db, workspaceId, messageId);
    },

    /**
     * An automatic reply (out of office) to one of our campaign messages: that recipient's
     * later steps of the campaign, still queued, become due no earlier than `notBefore`.
     * Returns how many were pushed back. After lockForReply, in the same transaction.
     */
    async deferFollowUps(workspaceId: string, messageId: string, notBefore: Date): Promise<number> {
      const result = await db.execute(sql`
        update campaign_sends s set due_at = ${notBefore.toISOString()}::timestamptz
        from campaign_sends p
        where p.workspace_id = ${workspaceId} and p.message_id = ${messageId}
          and s.workspace_id = p.workspace_id and s.campaign_id = p.campaign_id and s.recipient_id = p.recipient_id
          and s.step > p.step and s.status = 'queued' and s.due_at < ${notBefore.toISOString()}::timestamptz
        returning s.id`);
      return (result as unknown as { rows: unknown[] }).rows.length;
    },

    /**
     * A person's reply to one of our campaign messages: that recipient's later steps of the
     * campaign, still queued (reserved by a worker or not: its claim then finds the row no longer
     * queued), become `skipped` with the gate's reason, `replied`; the counters follow by trigger
     * (send-counts.repo.ts). Then the campaign completes if nothing is left queued or in flight
     * (completeIfDone, `at`): before, the follow-ups waited `afterDays` to be skipped by the gate,
     * and a campaign everyone had answered showed `sending`, follow-ups queued, for days. Returns
     * how many were skipped. After lockForReply, in the same transaction; the campaign row is
     * locked (updated) only when it completes, after the address lock, as the gate takes them.
     */
    async skipRepliedFollowUps(workspaceId: string, messageId: string, at: Date): Promise<number> {
      const rows = rowsOf<{ campaign_id: string }>(
        await db.execute(sql`
          update campaign_sends s set status = 'skipped', skip_reason = 'replied', lease_owner = null, lease_expires_at = null
          from campaign_sends p
          where p.workspace_id = ${workspaceId} and p.message_id = ${messageId}
            and s.workspace_id = p.workspace_id and s.campaign_id = p.campaign_id and s.recipient_id = p.recipient_id
            and s.step > p.step and s.status = 'queued'
          returning s.campaign_id`),
      );
      for (const campaignId of new Set(rows.map((r) => String(r.campaign_id)))) await completeIfDone(db, campaignId, at);
      return rows.length;
    },
  };
}
