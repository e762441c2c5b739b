import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { lockAddresses } from '../suppression/address-lock.js';
import type { CampaignRow } from './campaigns.repo.js';
import { gateSql, lockSendingMailboxSql, NO_MAILBOX, type GateRow } from './gate-sql.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { GENERIC_PLAN } from '../db/plan-hints.js';
import { withoutParkedMark } from './parked-sends.js';
import { fence, ts, type SendLease } from './ledger-fence.js';
import type { SendCandidate } from './send-ledger-reservation.repo.js';

/*
 * The send ledger's gate (SEND-LEDGER.md, "The gate"): the claim of a reserved send right
 * before its Gmail request, and the re-check of a send already held before a retry. Part of
 * the ledger repo (send-ledger.repo.ts).
 */

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

/** `options`: the ledger's (send-ledger.repo.ts SendLedgerOptions), its default applied. */
export function createLedgerClaimQueries(db: Db, options: { serializedEngine?: boolean; autoReplyDelayDays: number }) {
  const { autoReplyDelayDays } = options;

  const queries = {
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
      const [verdict] = await queries.claimMany([input]);
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
  };
  return queries;
}
