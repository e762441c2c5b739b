import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { lockAddresses } from '../suppression/address-lock.js';
import type { CampaignRow } from './campaigns.repo.js';
import { earlierStepAnsweredSql, gateSql, lockSendingMailboxSql, NO_MAILBOX, type GateRow } from './gate-sql.js';
import { autoReplyHoldSql, holdOrderLock } from './auto-reply-hold-sql.js';
import { DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS } from '../config/schema.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { GENERIC_PLAN } from '../db/plan-hints.js';
import { campaignSendOutcomeCtes } from '../webhooks/facts.js';
import { withoutParkedMark } from './parked-sends.js';
import { changeLeasedSend, fence, ts, type SendLease } from './ledger-fence.js';
import { createLedgerRecoveryQueries } from './send-ledger-recovery.repo.js';

export type { SendLease } from './ledger-fence.js';

/*
 * The send ledger's state machine (see README.md, "Lifecycle of a send", and SEND-LEDGER.md):
 * reservation, the claim, and the outcomes. Every change of a row in `sending` passes its
 * lease's fence (ledger-fence.ts); recovery's queries are in send-ledger-recovery.repo.ts, part of this repo.
 */

/**
 * The campaign states from which a campaign may still send (campaigns.service.ts): `paused`
 * resumes to `sending`, `scheduled` starts; `completed` and `cancelled` (a deletion cancels) are final.
 */
const MAY_STILL_SEND = sql.raw(`('scheduled', 'sending', 'paused')`);

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

export type GateResult =
  | { kind: 'go'; lease: SendLease }
  /** Must not be sent (opt-out, consent, reply, bounce, contact deleted): recorded `skipped`. */
  | { kind: 'skipped'; reason: string }
  /**
   * Another worker has it, or it is not due now (an automatic reply holds it: its row is queued
   * for then; or its campaign's sending window has closed: its row stays queued, reserved again
   * once the window opens): leave it alone.
   */
  | { kind: 'lost' }
  /** The campaign stopped sending (paused, cancelled): leave the row queued. */
  | { kind: 'halted' };

/** One send to claim in a group (all of one campaign and mailbox). */
export interface ClaimInput {
  campaign: CampaignRow;
  mailbox: { id: string; email: string };
  candidate: SendCandidate;
  owner: string;
  messageRowId: string;
  subject: string;
  now: Date;
  leaseUntil: Date;
}

/** A message Gmail accepted, to record `sent` (with its sequence's next step, if any). */
export interface SentInput {
  lease: SendLease;
  gmail: { id: string; threadId: string };
  at: Date;
  subject: string;
  next?: { campaign: CampaignRow; send: SendCandidate; senderDomain: string; dueAt: Date };
}

export interface SendLedgerOptions {
  /**
   * The engine runs one statement or transaction at a time (PGlite: every query and every
   * transaction holds its one connection exclusively). Then the claim, a single statement,
   * cannot interleave with an opt-out's transaction at all, so it runs without the explicit
   * transaction and the address lock — three round trips fewer per message. On a server the
   * lock is what provides that serialization.
   */
  serializedEngine?: boolean;
  /**
   * AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: how long an automatic reply holds a recipient's later steps
   * (auto-reply-hold-sql.ts). The service passes its configuration; unset, the configuration's default.
   */
  autoReplyDelayDays?: number;
}

export function createSendLedgerRepo(db: Db, options: SendLedgerOptions = {}) {
  const autoReplyDelayDays = options.autoReplyDelayDays ?? DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS;
  const changeLeased = (lease: SendLease, set: SQL, alsoDo?: SQL) => changeLeasedSend(db, lease, set, alsoDo);

  const repo = {
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

    /** Gives back reservations of rows never claimed (shutdown): another worker may take them at once. */
    async releaseReservations(owner: string, ids: string[]): Promise<void> {
      if (ids.length === 0) return;
      await db.execute(sql`
        update campaign_sends set lease_owner = null, lease_expires_at = null
        where status = 'queued' and lease_owner = ${owner} and id in (${sql.join(
          ids.map((id) => sql`${id}::uuid`),
          sql`, `,
        )})`);
    },

    /**
     * The gate, run right before the Gmail requests (after the pacer granted quota), for one
     * send or a group of sends of one campaign that reached it together (group-commit.ts).
     * One short transaction: the address locks (an opt-out for one of these addresses either
     * committed before, and is seen here, or waits until this commits), then every re-check,
     * then the claim: `sending`, this worker's lease, the next attempt, a messages row. One
     * verdict per input, in order.
     */
    async claimMany(all: ClaimInput[]): Promise<GateResult[]> {
      // The same send twice in a group (two passes of one worker reserved it): the first asks,
      // the others have lost — one statement would otherwise claim it twice.
      const first = new Map<string, ClaimInput>();
      for (const input of all) if (!first.has(input.candidate.id)) first.set(input.candidate.id, input);
      const inputs = [...first.values()];
      if (inputs.length === 0) return [];
      const { campaign, mailbox, owner } = inputs[0]!;
      // The group's time is its latest member's: the statement runs after every member reached the
      // gate, and the first one's time may be seconds old by then (the others queued behind a
      // running claim) — judged at it, a send that reached the gate after its window closed was claimed.
      const latest = (time: (input: ClaimInput) => Date) => new Date(Math.max(...inputs.map((input) => time(input).getTime())));
      const now = latest((input) => input.now);
      const leaseUntil = latest((input) => input.leaseUntil);
      const ids = inputs.map((i) => i.candidate.id);
      const laterSteps = inputs.some((x) => x.candidate.step > 0);
      // A queued row an automatic reply holds (requeued after a 429 or by recovery while the reply
      // came: nothing else moved it) gets the time it is held until, so it is not reserved again
      // and again before then, and progress shows when it goes.
      const held = laterSteps
        ? sql`,
            held as (
              update campaign_sends s set due_at = v.held_until
              from v where s.id = v.id and v.status = 'queued' and v.held_until > ${ts(now)} and s.due_at < v.held_until)`
        : sql``;
      const gate = async (tx: Db): Promise<GateResult[]> => {
        if (!options.serializedEngine) {
          await lockAddresses(tx, campaign.workspaceId, inputs.map((i) => i.candidate.email));
          await tx.execute(lockSendingMailboxSql(mailbox.id));
        }
        // One statement: the re-checks, then per row either `skipped` with the reason or the
        // claim (messages row, `sending` under this lease); nothing for a row another worker
        // holds or when the campaign stopped. No message_contacts row: the ledger row already
        // links the message to its contact (`contact_id`, `message_id`), and the timeline and
        // the purge read that link (migration 0035's note; BENCHMARKS.md, twelfth pass).
        const rows = rowsOf<GateRow & { id: string; claimable: boolean }>(
          await tx.execute(sql`${sql.raw(GENERIC_PLAN)}
            with i as (
              select * from unnest(${pgArray(ids)}::uuid[], ${pgArray(inputs.map((x) => x.messageRowId))}::uuid[], ${pgArray(inputs.map((x) => x.subject))}::text[])
                as i(send_id, message_row_id, subject)),
            g as (${gateSql(ids, campaign, mailbox.id, laterSteps, now, autoReplyDelayDays)}),
            v as (
              select g.*, i.message_row_id, i.subject,
                g.status = 'queued' and (g.lease_owner is null or g.lease_owner = ${owner} or g.lease_expired) and g.due
                  and g.campaign_status = 'sending' and g.mailbox_sending as claimable
              from g join i on i.send_id = g.id),
            sk as (
              update campaign_sends s set status = 'skipped', skip_reason = v.skip_reason, lease_owner = null, lease_expires_at = null
              from v where s.id = v.id and v.claimable and v.skip_reason is not null),
            m as (
              insert into messages (id, workspace_id, mailbox_id, direction, status, rfc822_message_id, subject, from_address, to_addresses, sent_by)
              select v.message_row_id, ${campaign.workspaceId}::uuid, ${mailbox.id}::uuid, 'outbound', 'sending',
                     v.rfc822_message_id, v.subject, ${mailbox.email}, array[v.email]::text[], ${campaign.createdBy}::uuid
              from v where v.claimable and v.skip_reason is null
              returning id),
            u as (
              update campaign_sends s set status = 'sending', lease_owner = ${owner}, lease_expires_at = ${ts(leaseUntil)},
                attempts = v.attempts + 1, claimed_at = ${ts(now)}, message_id = m.id, resolve_looks = 0, error_code = ${withoutParkedMark(sql`s.error_code`)}
              from v join m on m.id = v.message_row_id where s.id = v.id)${held}
            select id, status, lease_owner, lease_expired, attempts, campaign_status, mailbox_sending, held_until, due, skip_reason from v`),
        );
        const byId = new Map(rows.map((r) => [r.id, r]));
        return all.map((input): GateResult => {
          const row = first.get(input.candidate.id) === input ? byId.get(input.candidate.id) : undefined;
          // Not due (any more): an automatic reply moved this follow-up later after it was reserved
          // (follow-ups.repo.ts deferFollowUps), or holds it (auto-reply-hold-sql.ts; `held` above).
          if (!row || row.status !== 'queued' || (row.lease_owner !== null && row.lease_owner !== owner && !row.lease_expired) || !row.due) return { kind: 'lost' };
          if (row.campaign_status !== 'sending' || !row.mailbox_sending) return { kind: 'halted' };
          if (row.skip_reason) return { kind: 'skipped', reason: row.skip_reason };
          return { kind: 'go', lease: { id: input.candidate.id, owner, attempt: Number(row.attempts) + 1, messageRowId: input.messageRowId } };
        });
      };
      return options.serializedEngine ? gate(db) : db.transaction((tx) => gate(tx as unknown as Db));
    },

    /** The gate for one send (claimMany of one). */
    async claim(input: ClaimInput): Promise<GateResult> {
      const [verdict] = await repo.claimMany([input]);
      return verdict!;
    },

    /**
     * The gate again for a send this worker already holds, before a retry (after a 429
     * pause): an opt-out that arrived during the pause wins; an automatic reply to an earlier
     * step recorded meanwhile, or the close of the campaign's sending window, hands the send
     * back to the queue (until the time the reply holds it; a closed window leaves its due time,
     * and the worker reserves nothing outside the window) — its messages row deleted: nothing
     * went out —, `lost` to this worker; otherwise the lease is renewed.
     */
    async recheck(lease: SendLease, campaign: CampaignRow, send: { email: string; step: number }, now: Date, leaseUntil: Date): Promise<GateResult> {
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        await lockAddresses(tx, campaign.workspaceId, [send.email]);
        const mailboxId = campaign.mailboxId ?? NO_MAILBOX;
        await tx.execute(lockSendingMailboxSql(mailboxId));
        const [row] = rowsOf<GateRow>(await tx.execute(gateSql([lease.id], campaign, mailboxId, send.step > 0, now, autoReplyDelayDays)));
        if (!row || row.status !== 'sending' || row.lease_owner !== lease.owner || Number(row.attempts) !== lease.attempt) return { kind: 'lost' } as const;
        if (row.campaign_status !== 'sending' || !row.mailbox_sending) return { kind: 'halted' } as const;
        const reason = row.skip_reason;
        if (reason) {
          await tx.execute(sql`
            update campaign_sends set status = 'skipped', skip_reason = ${reason}, lease_owner = null, lease_expires_at = null, message_id = null, error_code = null
            where ${fence(lease)}`);
          await tx.execute(sql`delete from messages where id = ${lease.messageRowId}::uuid`);
          return { kind: 'skipped', reason } as const;
        }
        if (!row.due) {
          const heldUntil = row.held_until === null ? sql`null` : ts(new Date(row.held_until));
          await tx.execute(sql`
            update campaign_sends set status = 'queued', due_at = greatest(due_at, ${heldUntil}), lease_owner = null, lease_expires_at = null,
              message_id = null, error_code = null, resolve_looks = 0
            where ${fence(lease)}`);
          await tx.execute(sql`delete from messages where id = ${lease.messageRowId}::uuid`);
          return { kind: 'lost' } as const;
        }
        await tx.execute(sql`update campaign_sends set lease_expires_at = ${ts(leaseUntil)}, error_code = ${withoutParkedMark()} where ${fence(lease)}`);
        return { kind: 'go', lease } as const;
      });
    },

    /**
     * For each accepted message: the ledger row, its messages row and (for a sequence) the
     * next step's row, all in one statement whatever the number of messages (group-commit.ts
     * gathers the lanes' outcomes); per input, false when its lease was lost (nothing of it
     * changed). The next step is due `next.dueAt` — or later, when an automatic reply to
     * this or an earlier step was recorded while it was in flight (auto-reply-hold-sql.ts) —,
     * gets its own Message-ID, and goes in the same thread. Each `message.sent` event carries
     * its own message's sent time (`at`, when Gmail answered it), not the group's. A next step
     * whose recipient already replied to this or an earlier step is written `skipped` (`replied`).
     * On a server, when there are next steps, the statement runs in a transaction after the
     * address locks of those sends (holdOrderLock: ordered with sync recording a reply or an
     * out-of-office).
     */
    async markSentMany(inputs: SentInput[]): Promise<boolean[]> {
      if (inputs.length === 0) return [];
      const col = <T extends string | number | null>(f: (x: SentInput) => T) => pgArray(inputs.map(f));
      // Only when a sequence has a next step: an INSERT in the statement fires the counters' insert trigger even for no rows.
      // The next step is queued only while its campaign may still send it (MAY_STILL_SEND, not
      // deleted): a send in flight when its campaign was cancelled, deleted or completed is
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
      // A person who replied to this step or an earlier one while it was in flight (or awaiting
      // recovery) gets the next step written `skipped` (`replied`): queued, it waited `afterDays`
      // for the gate to skip it, the campaign `sending` meanwhile (follow-ups.repo.ts skips the
      // steps queued when the reply is recorded; this, the ones queued after).
      const nextStep = { campaignId: sql`l.campaign_id`, recipientId: sql`l.recipient_id`, step: sql`l.step + 1` };
      const nextSteps = inputs.some((x) => x.next)
        ? sql`,
          campaign as materialized (
            select c.id, c.status, c.deleted_at from campaigns c where c.id = any(array(select l.campaign_id from ledger l))),
          nx as (
            insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, due_at, status, skip_reason)
            select l.workspace_id, l.campaign_id, l.step + 1, l.contact_id, l.recipient_id, l.email, gen_random_uuid()::text || '@' || i.sender_domain,
                   greatest(i.next_due, ${autoReplyHoldSql(nextStep, autoReplyDelayDays)}),
                   case when answered.replied then 'skipped' else 'queued' end::send_status, case when answered.replied then 'replied' end
            from ledger l join i on i.id = l.id join campaign on campaign.id = l.campaign_id
              -- Once per row (offset 0: not pulled up into each of its two uses).
              cross join lateral (select ${earlierStepAnsweredSql(nextStep, 'reply')} as replied offset 0) answered
            where i.next_due is not null and campaign.status in ${MAY_STILL_SEND} and campaign.deleted_at is null
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
      const [changed] = await repo.markSentMany([{ lease, gmail, at, subject, next }]);
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

    /** Back to the queue: nothing went out. The attempt's messages row goes away with it. */
    async requeue(lease: SendLease, dueAt: Date, errorCode: string): Promise<boolean> {
      return changeLeased(
        lease,
        sql`status = 'queued', due_at = ${ts(dueAt)}, error_code = ${errorCode}, message_id = null, lease_owner = null, lease_expires_at = null, resolve_looks = 0`,
        sql`,
          m as (delete from messages where id = ${lease.messageRowId}::uuid and exists (select 1 from ledger))`,
      );
    },
    ...createLedgerRecoveryQueries(db),
  };
  return repo;
}

export type SendLedgerRepo = ReturnType<typeof createSendLedgerRepo>;
