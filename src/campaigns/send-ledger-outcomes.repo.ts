import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { CampaignRow } from './campaigns.repo.js';
import { mayStillSendSql, refusedNowSql, type DecidedStep } from './gate-sql.js';
import { autoReplyHoldSql, holdOrderLock } from './auto-reply-hold-sql.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { campaignSendOutcomeCtes } from '../webhooks/facts.js';
import { changeLeasedSend, type SendLease } from './ledger-fence.js';
import type { SendCandidate } from './send-ledger-reservation.repo.js';
import { requeuedUnlessRefusedSet, requeueUnlessRefused } from './requeue-unless-refused.js';

/*
 * The send ledger's outcomes of an attempt (README.md, "Lifecycle of a send"): `sent` (with a
 * sequence's next step), `failed`, or back to the queue — each under its lease's fence
 * (ledger-fence.ts). Recovery's verdicts are in send-ledger-recovery.repo.ts. Part of the
 * ledger repo (send-ledger.repo.ts).
 */

/** A message Gmail accepted, to record `sent` (with its sequence's next step, if any). */
export interface SentInput {
  lease: SendLease;
  gmail: { id: string; threadId: string };
  at: Date;
  subject: string;
  next?: { campaign: CampaignRow; send: SendCandidate; senderDomain: string; dueAt: Date };
}

/** `options`: the ledger's (send-ledger.repo.ts SendLedgerOptions), its default applied. */
export function createLedgerOutcomeQueries(db: Db, options: { serializedEngine?: boolean; autoReplyDelayDays: number }) {
  const { autoReplyDelayDays } = options;
  const changeLeased = (lease: SendLease, set: SQL, alsoDo?: SQL) => changeLeasedSend(db, lease, set, alsoDo);

  const queries = {
    /**
     * For each accepted message: the ledger row, its messages row and (for a sequence) the
     * next step's row, all in one statement whatever the number of messages (group-commit.ts
     * gathers the lanes' outcomes); per input, false when its lease was lost (nothing of it
     * changed). The next step is due `next.dueAt` — or later, when an automatic reply to
     * this or an earlier step was recorded while it was in flight (auto-reply-hold-sql.ts) —,
     * gets its own Message-ID, and goes in the same thread. Each `message.sent` event carries
     * its own message's sent time (`at`, when Gmail answered it), not the group's. A next step
     * the gate would already refuse (gate-sql.ts refusedNowSql: the address suppressed, the
     * contact deleted or moved, consent withdrawn for a marketing campaign, a reply to or a bounce
     * of this or an earlier step) is written `skipped` with the gate's reason.
     * On a server, when there are next steps, the statement runs in a transaction after the
     * address locks of those sends (holdOrderLock: ordered with sync recording a reply or an
     * out-of-office).
     */
    async markSentMany(inputs: SentInput[]): Promise<boolean[]> {
      if (inputs.length === 0) return [];
      const col = <T extends string | number | null>(f: (x: SentInput) => T) => pgArray(inputs.map(f));
      // Only when a sequence has a next step: an INSERT in the statement fires the counters' insert trigger even for no rows.
      // The next step is queued only while its campaign may still send it (gate-sql.ts
      // mayStillSendSql): a send in flight when its campaign was cancelled, deleted or completed is
      // recorded `sent` and queues nothing for the cancel's sweep to skip; a paused campaign's
      // still gets it, for when it resumes. `campaign`: the statement's campaigns (one in practice:
      // records group by campaign and mailbox) read by key, one primary-key probe; MATERIALIZED
      // keeps the state's test out of it — pushed down, it matches the partial index of running
      // campaigns (migration 0032), and the planner read all of them to find this one.
      // No `for share`, unlike the gate: a cancel that commits while this statement runs, after
      // its snapshot, is not seen and the next step is queued — and then skipped by the cancel's
      // sweep. The cancel's mark stays until the counters show nothing queued or in flight
      // (cancelled-sends.repo.ts `finishDone`), and this statement turns the send in flight into
      // the queued next step in one commit, so no sweep sees neither; the gate claims nothing of
      // a cancelled campaign meanwhile. The lock would only save that rare row, at the cost of
      // every record waiting on the campaign row's writers. (PGlite runs one statement at a time.)
      // A next step the gate would refuse now is written `skipped` with the gate's reason, by the
      // gate's own verdict (gate-sql.ts refusedNowSql: its arms, its order): an address suppressed
      // while this step was in flight (or awaiting recovery) for the campaign's topic, the contact
      // deleted or moved, consent withdrawn (marketing only), a person's reply to or a bounce of
      // this step or an earlier one. Queued, it waited `afterDays` for the gate to skip it, the
      // campaign `sending` meanwhile: what recorded the reason skipped the steps queued then
      // (follow-ups.repo.ts skipFollowUps); this, the one queued after.
      const nextStep: DecidedStep = {
        workspaceId: sql`l.workspace_id`,
        campaignId: sql`l.campaign_id`,
        recipientId: sql`l.recipient_id`,
        step: sql`l.step + 1`,
        email: sql`l.email`,
        contactId: sql`l.contact_id`,
      };
      const nextSteps = inputs.some((x) => x.next)
        ? sql`,
          campaign as materialized (
            select c.id, c.status, c.deleted_at, c.topic, c.kind from campaigns c where c.id = any(array(select l.campaign_id from ledger l))),
          nx as (
            insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, due_at, status, skip_reason)
            select l.workspace_id, l.campaign_id, l.step + 1, l.contact_id, l.recipient_id, l.email, gen_random_uuid()::text || '@' || i.sender_domain,
                   greatest(i.next_due, ${autoReplyHoldSql(nextStep, autoReplyDelayDays)}),
                   case when ended.reason is null then 'queued' else 'skipped' end::send_status, ended.reason
            from ledger l join i on i.id = l.id join campaign on campaign.id = l.campaign_id
              -- Once per row (offset 0: not pulled up into each of its two uses).
              cross join lateral (select ${refusedNowSql(nextStep, { topic: sql`campaign.topic`, consentNeeded: sql`campaign.kind = 'marketing'` })} as reason offset 0) ended
            where i.next_due is not null and ${mayStillSendSql(sql`campaign`)}
            on conflict do nothing)`
        : sql``;
      const record = async (tx: Db) => rowsOf<{ id: string }>(
        await tx.execute(sql`
          with i as (
            select * from unnest(${col((x) => x.lease.id)}::uuid[], ${col((x) => x.lease.owner)}::text[], ${col((x) => x.lease.attempt)}::int[],
                                 ${col((x) => x.lease.messageRowId)}::uuid[], ${col((x) => x.gmail.id)}::text[], ${col((x) => x.gmail.threadId)}::text[],
                                 ${col((x) => x.at.toISOString())}::timestamptz[], ${col((x) => x.subject)}::text[],
                                 ${col((x) => x.next?.dueAt.toISOString() ?? null)}::timestamptz[], ${col((x) => x.next?.senderDomain ?? null)}::text[])
              as i(id, owner, attempt, message_row_id, gmail_id, thread_id, at, subject, next_due, sender_domain)),
          ledger as (
            update campaign_sends s set status = 'sent', gmail_message_id = i.gmail_id, gmail_thread_id = i.thread_id, sent_at = i.at, error_code = null,
              lease_owner = null, lease_expires_at = null
            from i where s.id = i.id and s.status = 'sending' and s.lease_owner = i.owner and s.attempts = i.attempt
            returning s.id, s.workspace_id, s.campaign_id, s.step, s.contact_id, s.recipient_id, s.email, s.message_id, s.sent_at),
          m as (
            -- The subject the claim stored is the rendered one; recovery, which resolves a send
            -- without rendering it again, passes only its step's template: the stored one stays.
            update messages ms set status = 'sent', gmail_message_id = i.gmail_id, gmail_thread_id = i.thread_id, at = i.at, subject = coalesce(ms.subject, i.subject)
            from i join ledger l on l.id = i.id where ms.id = i.message_row_id)${nextSteps}${campaignSendOutcomeCtes('message.sent', 'sent_at')}
          select id from ledger`),
      );
      // The next steps' hold and replies are read after the recipients' address locks, in a
      // statement of its own: a reply or out-of-office sync records meanwhile is either seen by it
      // or sees the new rows (holdOrderLock). Only for records with next steps.
      const holding = options.serializedEngine ? [] : inputs.filter((x) => x.next).map((x) => x.lease.id);
      const rows =
        holding.length === 0
          ? await record(db)
          : await db.transaction(async (txRaw) => {
              const tx = txRaw as unknown as Db;
              await holdOrderLock.ofSends(tx, holding);
              return record(tx);
            });
      const changed = new Set(rows.map((r) => r.id));
      return inputs.map((x) => changed.has(x.lease.id));
    },

    /** markSentMany of one. */
    async markSent(lease: SendLease, gmail: { id: string; threadId: string }, at: Date, subject: string, next?: SentInput['next']): Promise<boolean> {
      const [changed] = await queries.markSentMany([{ lease, gmail, at, subject, next }]);
      return changed!;
    },

    async markFailed(lease: SendLease, errorCode: string): Promise<boolean> {
      return changeLeased(
        lease,
        sql`status = 'failed', error_code = ${errorCode}, lease_owner = null, lease_expires_at = null`,
        sql`,
          m as (update messages set status = 'failed', error_code = ${errorCode} where id = ${lease.messageRowId}::uuid and exists (select 1 from ledger))${campaignSendOutcomeCtes('message.failed', new Date(), errorCode)}`,
      );
    },

    /**
     * Back to the queue: nothing went out. The attempt's messages row goes away with it. A send
     * the gate would refuse now (a reply, a suppression, a consent withdrawal or a bounce recorded
     * while it was claimed) is written `skipped` with the gate's reason instead, and its campaign
     * completes if nothing is left (requeue-unless-refused.ts).
     */
    async requeue(lease: SendLease, dueAt: Date, errorCode: string): Promise<boolean> {
      const deleteMessageRow = sql`, m as (delete from messages where id = ${lease.messageRowId}::uuid and exists (select 1 from ledger))`;
      return requeueUnlessRefused(db, lease, options.serializedEngine === true, (tx) => changeLeasedSend(tx, lease, requeuedUnlessRefusedSet(dueAt, errorCode), deleteMessageRow));
    },
  };
  return queries;
}
