import { AsyncLocalStorage } from 'node:async_hooks';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { suppressedSql } from '../suppression/suppressed-sql.js';
import { holdOrderLock } from './auto-reply-hold-sql.js';
import { mayStillSendSql, standingRefusalArms } from './gate-sql.js';
import { completeIfDone } from './campaigns.repo.js';

/*
 * Sequence rules applied to queued follow-ups by what ends or holds a recipient's sequence, in
 * the transaction that records it (the event and its effect commit together). A person's reply
 * (sync), any new suppression entry (a hard bounce, a recipient's opt-out, a user's entry: written
 * by suppression.repo.ts, which calls this) and a consent withdrawal (consent-records.ts) end it
 * at once (skipFollowUps); an out-of-office holds it (deferFollowUps).
 * Any other bounce of a message (a soft one below the limit) ends its recipient's sequence in
 * its campaign (`bounced`, as the gate); a delay changes nothing here. The gate still reads each
 * rule before each step (gate-sql.ts): a step queued or claimed beside the reply or the opt-out
 * is skipped there.
 * A step claimed when the reply is recorded and then handed back to the queue unsent (a 429,
 * recovery finding no copy) is written skipped by its requeue (requeue-unless-refused.ts), as is
 * one claimed when a suppression, a consent withdrawal or a bounce is recorded.
 */
/**
 * Why a recipient's queued later steps end before their day, with whose they are: the gate's own
 * reasons for them (gate-sql.ts), so a step skipped early is counted as the gate would have.
 */
export type EndedSequence =
  /** A person replied to our message `messageId`: its recipient, in its campaign. */
  | { reason: 'replied'; messageId: string }
  /** Our message `messageId` bounced, soft or hard (the gate skips after any bounce): its recipient, in its campaign. */
  | { reason: 'bounced'; messageId: string }
  /** These addresses were suppressed (a bounce, an opt-out, a user's entry): theirs, wherever the gate now refuses them. */
  | { reason: 'suppressed'; emails: string[] }
  /** These contacts' consent was withdrawn (their latest record no longer `opted_in`): theirs, in marketing campaigns the gate now refuses them for. */
  | { reason: 'no_consent'; contactIds: string[] };

/** The campaigns a unit of work's skips touched, whose completion it asks once, at its end (oneCompletionQuestion). */
interface CompletionsAsked {
  ids: Set<string>;
  at: Date;
  open: boolean;
}
const unitOfWork = new AsyncLocalStorage<CompletionsAsked>();

/**
 * Runs `work` — the part of a transaction (`db`) that may end sequences more than once: each skip
 * of a notice's bounces and suppressions, a form's topics, an opt-out's entry and its consent
 * records — and then asks the completion of every campaign its skips touched, once, in key order
 * (completeIfDone). Asked after each skip, a transaction took the completion locks one call at a
 * time, in the order of its notice or form: campaign B, then A, while another took A, then B — and
 * each waited for the other (40P01, one of them rolled back: completion-lock-order.test.ts). Within
 * a unit already under way (nested), `work` joins it.
 */
export async function oneCompletionQuestion<T>(db: Db, work: () => Promise<T>): Promise<T> {
  if (unitOfWork.getStore()?.open) return work();
  const asked: CompletionsAsked = { ids: new Set(), at: new Date(0), open: true };
  const result = await unitOfWork.run(asked, work).finally(() => (asked.open = false));
  await completeIfDone(db, [...asked.ids], asked.at);
  return result;
}

/** A skip's completion question: left to the unit of work it is part of (oneCompletionQuestion), else asked now. */
async function askCompletion(db: Db, campaignIds: string[], at: Date): Promise<void> {
  const asked = unitOfWork.getStore();
  if (!asked?.open) return completeIfDone(db, campaignIds, at);
  for (const id of campaignIds) asked.ids.add(id);
  if (at > asked.at) asked.at = at;
}

export function createFollowUpRules(db: Db) {
  return {
    /** oneCompletionQuestion in this transaction. */
    oneCompletionQuestion: <T>(work: () => Promise<T>) => oneCompletionQuestion(db, work),

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
     * A recipient's sequence ends now, not when each later step comes due: their later steps
     * still queued (reserved by a worker or not: its claim then finds the row no longer queued)
     * become `skipped` with the reason the gate would give each at its claim (gate-sql.ts), so the
     * counts by reason are the same as before, only earlier; the counters follow by trigger
     * (send-counts.repo.ts). Then each campaign touched completes if nothing is left queued or in
     * flight (completeIfDone, `at`): before, the follow-ups waited `afterDays` to be skipped by
     * the gate, and a campaign nobody was left to mail showed `sending`, follow-ups queued, for
     * days.
     *
     * - `replied`: a person's reply to `messageId` — its recipient's later steps in its campaign.
     * - `bounced`: a bounce of `messageId`, soft included — the same steps (the gate skips a later
     *   step after any bounce of an earlier one, gate-sql.ts).
     * - `suppressed`: these addresses were just suppressed (a hard bounce, a recipient's opt-out,
     *   an entry a user added; suppression.repo.ts calls this wherever an entry is written) —
     *   their later steps in every campaign of the workspace that the gate's own rule
     *   (suppressed-sql.ts, with each campaign's topic) now refuses: an `all` entry reaches every
     *   campaign, a topic's only that topic's, and nothing the gate would still send is skipped.
     * - `no_consent`: these contacts' consent was just withdrawn (consent-records.ts, the CSV
     *   import) — their later steps that the gate's verdict (gate-sql.ts standingRefusalArms, each
     *   campaign's kind and topic) now refuses `no_consent`: marketing campaigns only, and not a
     *   step the gate would refuse for an earlier reason (suppressed, its contact moved): that
     *   one is left to its own rule. One statement for the lot (an import's batch), along
     *   `campaign_sends_contact_idx`.
     *
     * Only in a campaign the gate may still claim from (scheduled, sending, paused): a cancelled
     * or deleted one's queued sends are its sweep's, `cancelled` (CANCEL-AND-DELETION.md). A first
     * step is left to the gate: it is the campaign's own run, not a sequence waiting for days.
     *
     * After the recipients' address locks, in the same transaction (lockForReply; the entry's
     * write's own; a consent record's contact locks): a sent record queuing a next step (holdOrderLock) or a claim of these
     * addresses commits before this reads the queued steps, or starts after this commits and
     * sees the reply or the entry. The completion locks of the campaigns touched are then taken —
     * at the end of the unit of work, when this skip is part of one that may skip again
     * (oneCompletionQuestion) — (completeIfDone, completing or not, in key order; advisory, not the campaigns' rows, which
     * the gate holds before it writes the counters this skip has written): of two transactions
     * skipping a campaign's last follow-ups at once, the second waits for the first and sees what
     * it committed. A campaign's row is updated only when it completes, after the address locks
     * and the ledger's rows, as the gate takes them. Returns how many were skipped.
     */
    async skipFollowUps(workspaceId: string, ended: EndedSequence, at: Date): Promise<number> {
      if ((ended.reason === 'suppressed' ? ended.emails : ended.reason === 'no_consent' ? ended.contactIds : [ended.messageId]).length === 0) return 0;
      const mayStillSend = sql`c.id = s.campaign_id and ${mayStillSendSql(sql`c`)}`;
      const skip = sql`update campaign_sends s set status = 'skipped', skip_reason = ${ended.reason}, lease_owner = null, lease_expires_at = null`;
      const statement =
        ended.reason === 'no_consent'
          ? sql`${skip}
              from campaigns c, contacts ct
              where s.contact_id = any(${pgArray(ended.contactIds)}::uuid[]) and s.workspace_id = ${workspaceId}
                and s.step > 0 and s.status = 'queued' and ${mayStillSend} and c.kind = 'marketing' and ct.id = s.contact_id
                and (case ${standingRefusalArms({ topic: sql`c.topic`, consentNeeded: true })} end) = 'no_consent'
              returning s.campaign_id`
          : ended.reason === 'replied' || ended.reason === 'bounced'
          ? sql`${skip}
              from campaign_sends p, campaigns c
              where p.workspace_id = ${workspaceId} and p.message_id = ${ended.messageId}
                and s.workspace_id = p.workspace_id and s.campaign_id = p.campaign_id and s.recipient_id = p.recipient_id
                and s.step > p.step and s.status = 'queued' and ${mayStillSend}
              returning s.campaign_id`
          : sql`${skip}
              from recipients r, campaigns c
              where r.workspace_id = ${workspaceId} and lower(r.email) = any(${pgArray(ended.emails.map((e) => e.toLowerCase()))}::text[])
                and s.recipient_id = r.id and s.workspace_id = r.workspace_id and s.step > 0 and s.status = 'queued' and ${mayStillSend}
                and ${suppressedSql(sql`s.workspace_id`, sql`s.email`, sql`r.address_hash`, sql`c.topic`, { probesOnly: true })}
              returning s.campaign_id`;
      const rows = rowsOf<{ campaign_id: string }>(await db.execute(statement));
      await askCompletion(db, [...new Set(rows.map((r) => String(r.campaign_id)))], at);
      return rows.length;
    },
  };
}
