import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { holdOrderLock } from './auto-reply-hold-sql.js';

/*
 * Sequence rules that mail read from the mailbox applies to queued follow-ups. Written by
 * the sync inside its own transaction (the event and its effect commit together). A human
 * reply or a bounce needs nothing here: the claim checks mail_events before each step.
 */
export function createFollowUpRules(db: Db) {
  return {
    /**
     * First in the transaction that records an automatic reply to one of our messages, before
     * its event: the answered recipient's lock (holdOrderLock, auto-reply-hold-sql.ts). A sent
     * record queuing that recipient's next step right now commits before the deferral reads the
     * queued steps, or starts after this commits and reads the reply. Before the event row: its
     * key locks the answered message's row, which a contact's purge deletes under the address
     * lock — taken after the event, the two could deadlock.
     */
    async lockForAutoReply(workspaceId: string, messageId: string): Promise<void> {
      await holdOrderLock.ofMessage(db, workspaceId, messageId);
    },

    /**
     * An automatic reply (out of office) to one of our campaign messages: that recipient's
     * later steps of the campaign, still queued, become due no earlier than `notBefore`.
     * Returns how many were pushed back. After lockForAutoReply, in the same transaction.
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
  };
}
