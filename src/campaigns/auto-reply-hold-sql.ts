import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray } from '../db/pg-array.js';
import { PROBE_ONLY } from '../db/plan-hints.js';
import { lockAddressesOfSends } from '../suppression/address-lock.js';

/*
 * The sequence rule for automatic replies, as SQL: the one place that says how long an
 * out-of-office holds a contact's later steps. An automatic reply to an earlier step of the
 * campaign holds each later step of that recipient until AUTO_REPLY_FOLLOW_UP_DELAY_DAYS after
 * the reply. Read where a step is decided, not only where the reply is recorded: the
 * out-of-office usually arrives within seconds, while the step it answers is still in flight
 * (Gmail accepted it, its `sent` record not yet written — or a crash left it to recovery), so
 * the next step's row does not exist yet, or while that next step is itself claimed (waiting
 * out a 429). follow-ups.repo.ts `deferFollowUps` moves the rows that are queued when the reply
 * is recorded; the gate (gate-sql.ts; its claim and its re-check before a retry) and the
 * queuing of a next step (send-ledger-outcomes.repo.ts `markSentMany`) read this for the rest.
 *
 * The recording and the queuing are ordered by one lock (holdOrderLock below): read in the
 * queuing's statement from its snapshot, an out-of-office that sync committed after that
 * snapshot but before the new row committed was missed by both sides — the queuing did not see
 * the reply, and deferFollowUps did not see the row — and the follow-up was queued `afterDays`
 * after the send instead of after the hold.
 */

/** Where a step stands: its campaign, recipient and step number, as SQL of the statement reading it. */
export interface StepRef {
  campaignId: SQL;
  recipientId: SQL;
  step: SQL;
}

/**
 * SQL: the recipient's earlier sends in its campaign, as a relation `p` (their `message_id`), for
 * a join to their mail events. Fenced (`offset 0`), so the planner takes the sends first, by the
 * ledger's key (recipient, campaign, step), and only then their events by message. Joined
 * unfenced, it could reach them the other way round — walking the index on `message_id`, every
 * sent row of the ledger filtered by recipient, for each check of each send — and did whenever the
 * ledger's statistics were the launch's (no send had a message id yet, so that index looked
 * empty): a step started before the next ANALYZE was claimed in O(ledger) per send
 * (send-claim-plan.test.ts; BENCHMARKS.md, "A sequence's second step").
 */
export function earlierSendsSql(target: StepRef): SQL {
  return sql`(select p.message_id from campaign_sends p
              where p.campaign_id = ${target.campaignId} and p.recipient_id = ${target.recipientId} and p.step < ${target.step}${PROBE_ONLY}) p`;
}

/**
 * SQL: a one-row subquery, `(select … as until)`, the time before which this step must not go
 * out because of an automatic reply to an earlier step of the same recipient (null: none, or
 * the delay is 0). Usable as a scalar (`greatest(x, <this>)`) or a lateral relation. Per step:
 * one descent of the ledger's key `(recipient_id, campaign_id, step, workspace_id)` to the
 * recipient's earlier sends, then their automatic replies by message and type
 * (`mail_events_source_unique`) — index probes, like the gate's reply and bounce checks.
 * The delay is counted in seconds, written into the statement (a number from the config):
 * `interval '1 day'` added to a timestamptz follows the session's time zone across a
 * daylight-saving change.
 */
export function autoReplyHoldSql(target: StepRef, delayDays: number): SQL {
  if (delayDays <= 0) return sql`(select null::timestamptz as until)`;
  const delay = sql.raw(`interval '${Math.round(delayDays * 86_400)} seconds'`);
  return sql`(select max(ar.at) + ${delay} as until
    from ${earlierSendsSql(target)} join mail_events ar on ar.message_id = p.message_id and ar.type = 'auto_reply')`;
}

/**
 * The one order between recording a reply — a person's or an automatic one — and queuing a next
 * step of the recipient it answered (each in its transaction, before the statement that reads
 * the reply or moves the queued steps; PGlite runs each statement and transaction alone, so the
 * record skips it there): both take the recipient's address lock (suppression/address-lock.ts,
 * the lock the gate's claim and an opt-out take), so whichever comes second starts its statement
 * after the first committed and sees it — the queuing sees the reply and holds the step (an
 * out-of-office) or writes it `skipped` (a person's reply), or the reply's deferFollowUps /
 * skipFollowUps sees the new row and moves or skips it. Per address: unrelated addresses
 * never wait for each other; a group's records take theirs in one statement, in key order (no
 * deadlock with a group claim); a reply's transaction takes the one of the send it answers, and
 * only then the campaign's row (completing it), as the gate takes the address locks before its
 * share lock on that row. The gate still reads a person's reply before each step (belt and
 * braces: a step claimed while the reply was recorded is skipped `replied` at its re-check).
 */
export const holdOrderLock = {
  /**
   * Before queuing the next steps of these sends (send-ledger-outcomes.repo.ts markSentMany; a server's, when any has a next step),
   * or a claimed send again (requeue-unless-refused.ts: a reply, an entry or a withdrawal meanwhile writes it skipped instead).
   */
  ofSends: (tx: Db, sendIds: string[]) => lockAddressesOfSends(tx, sql`s.id = any(${pgArray(sendIds)}::uuid[])`),
  /** Before recording a reply to this message and moving or skipping its recipient's later steps (follow-ups.repo.ts lockForReply). */
  ofMessage: (tx: Db, workspaceId: string, messageId: string) =>
    lockAddressesOfSends(tx, sql`s.message_id = ${messageId}::uuid and s.workspace_id = ${workspaceId}::uuid`),
};
