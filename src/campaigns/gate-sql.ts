import { sql, type SQL } from 'drizzle-orm';
import { pgArray } from '../db/pg-array.js';
import type { CampaignRow } from './campaigns.repo.js';
import { autoReplyHoldSql, earlierSendsSql, type StepRef } from './auto-reply-hold-sql.js';
import { optedInSql } from './eligibility-sql.js';
import { PROBE_ONLY } from '../db/plan-hints.js';
import { suppressedSql } from '../suppression/suppressed-sql.js';
import { isInsideWindow } from './sending-window.js';

/*
 * The send gate's re-check, as SQL (send-ledger-claim.repo.ts claims and re-checks with it): the
 * rows of a group of sends, locked, with their campaign's state and the reason each must not
 * go out, if any. The rules themselves are shared with preflight and launch: suppression is
 * suppression/suppressed-sql.ts's (1:1 mail's claim uses it too), consent eligibility-sql.ts's.
 */

/** What the gate reads of one send. */
export interface GateRow {
  status: string;
  lease_owner: string | null;
  lease_expired: boolean;
  attempts: number;
  campaign_status: string;
  /** Its mailbox is connected and may send (not disconnected, not waiting to be reconnected): otherwise the gate halts. */
  mailbox_sending: boolean;
  /**
   * Until when an automatic reply to an earlier step holds this step (auto-reply-hold-sql.ts),
   * or null. Read here, not only when the reply is recorded: it may have come while the step
   * it answers was in flight, or while this one was claimed.
   */
  held_until: Date | string | null;
  /**
   * Due at the gate's `now`: its `due_at` has come, no automatic reply holds it (`held_until`),
   * and the campaign's sending window is open. The window is read here, at the last decision
   * before the Gmail request (the claim, and the re-check before a retry), not only by the worker
   * before a round: the pacer may hold a send up to a minute between the two, and a retry waits
   * out Gmail's pause, so a send read in the window before a round left after its close.
   */
  due: boolean;
  /**
   * Why it must not go out (invariant 1, P-10, a reply or bounce to an earlier step, or the
   * contact's address changed since launch: the address was taken off the contact, and the
   * consent checked is the contact's, not the address's — it may be someone else's now), or null.
   */
  skip_reason: string | null;
}

/** What stops a recipient's later steps when it answers an earlier one: a person's reply, or a bounce. */
export type EarlierAnswer = 'reply' | 'bounce';

/**
 * SQL: whether a person replied to (`reply`; an automatic reply is no reply) or a bounce came
 * back from an earlier step of this step's recipient in its campaign — the rule that stops a
 * sequence. One descent of the ledger's key to the recipient's earlier sends, then their mail
 * events by message and type. The gate asks it before each step (refusalArms), and so does every
 * step decided outside a claim (refusedNowSql).
 */
export function earlierStepAnsweredSql(target: StepRef, type: EarlierAnswer): SQL {
  return sql`exists (select 1 from ${earlierSendsSql(target)} join mail_events e on e.message_id = p.message_id and e.type = ${type}
                      ${type === 'reply' ? sql`and coalesce((e.detail ->> 'automatic')::boolean, false) = false` : sql``}${PROBE_ONLY})`;
}

/** The send being judged, as the gate's statements name its ledger row: `campaign_sends s`. */
const LEDGER_ROW: StepRef = { campaignId: sql`s.campaign_id`, recipientId: sql`s.recipient_id`, step: sql`s.step` };

/** How the gate's verdict reads a campaign: its topic, and whether it needs consent (marketing) — values, or SQL of the statement. */
export interface RefusalCampaign {
  topic: SQL | string | null;
  consentNeeded: SQL | boolean;
}

/**
 * SQL: the `when … then …` arms of the gate's verdict that do not depend on the send's earlier
 * steps, in the gate's order — suppressed (invariant 1), its contact deleted, its contact's
 * address changed since launch, no consent (P-10, marketing only). Over `campaign_sends s` and its
 * contact joined as `ct` (deleted_at, email). The gate's statement opens its `case` with them; what
 * ends a sequence before its day (follow-ups.repo.ts skipFollowUps) asks them of queued steps, so
 * a step skipped early is one the gate would skip, with the reason it would give. `topic`: the
 * campaign's (a value, or SQL of the statement); `consentNeeded`: whether the campaign is
 * marketing (a value, or SQL).
 */
export function standingRefusalArms(campaign: RefusalCampaign): SQL {
  const optedOut = sql`not ${optedInSql(sql`s.contact_id`, sql`s.workspace_id`)}`;
  const consent = campaign.consentNeeded === false ? sql`false` : campaign.consentNeeded === true ? optedOut : sql`(${campaign.consentNeeded} and ${optedOut})`;
  return sql`when ${suppressedSql(sql`s.workspace_id`, sql`s.email`, sql`(select r.address_hash from recipients r where r.id = s.recipient_id)`, campaign.topic, { probesOnly: true })} then 'suppressed'
        when s.contact_id is null or ct.deleted_at is not null then 'contact_deleted'
        when lower(ct.email) <> lower(s.email) then 'address_changed'
        when ${consent} then 'no_consent'`;
}

/**
 * SQL: every `when … then …` arm of the gate's verdict, in its order — the standing ones
 * (standingRefusalArms), then a person's reply to an earlier step (`replied`), then a bounce of
 * one (`bounced`). Over `campaign_sends s` and its contact `ct`, as standingRefusalArms.
 * `laterSteps` false: the statement holds first steps only, which have no earlier step (the
 * gate's cheaper plan).
 */
export function refusalArms(campaign: RefusalCampaign, laterSteps = true): SQL {
  const earlier = (type: EarlierAnswer) => (!laterSteps ? sql`false` : sql`s.step > 0 and ${earlierStepAnsweredSql(LEDGER_ROW, type)}`);
  return sql`${standingRefusalArms(campaign)}
        when ${earlier('reply')} then 'replied'
        when ${earlier('bounce')} then 'bounced'`;
}

/** A step being decided outside the claim, as SQL of the statement deciding it: what the gate's verdict reads of its ledger row. */
export interface DecidedStep extends StepRef {
  workspaceId: SQL;
  email: SQL;
  contactId: SQL;
}

/**
 * SQL: the reason the gate would refuse this step now — its own verdict (refusalArms: same
 * arms, same order, same reason names) — or null. For a step decided where no claim runs: the
 * next step a sent record writes (send-ledger-outcomes.repo.ts markSentMany) and a claimed send
 * handed back unsent (requeue-unless-refused.ts). Written `queued` when the gate would refuse it
 * at its claim, it only waited — `afterDays`, or a Retry-After of up to hours — for that verdict,
 * its campaign `sending` meanwhile. A scalar subquery: the step's row as a one-row `s` of the
 * given columns, its contact read once by key.
 */
export function refusedNowSql(target: DecidedStep, campaign: RefusalCampaign): SQL {
  return sql`(select case ${refusalArms(campaign)} end
    from (select ${target.workspaceId} as workspace_id, ${target.campaignId} as campaign_id, ${target.recipientId} as recipient_id,
                 ${target.step} as step, ${target.email} as email, ${target.contactId} as contact_id) s
    left join lateral (select k.deleted_at, k.email from contacts k where k.id = s.contact_id${PROBE_ONLY}) ct on true)`;
}

/**
 * SQL: whether the campaign row `campaign` (its alias in the statement) may still send — what
 * decides, outside a claim, whether a step is the verdict's (follow-ups.repo.ts skipFollowUps,
 * requeue-unless-refused.ts, the next step of send-ledger-outcomes.repo.ts markSentMany): its
 * state one from which it sends (`paused` resumes to `sending`, `scheduled` starts; `completed`
 * and `cancelled` are final — a cancelled campaign's unsent steps are its sweep's, `cancelled`),
 * and not deleted. A deleted campaign is never in those states (campaigns.service.ts `remove`
 * cancels a running one in the transaction that marks it deleted, under its row lock, and
 * `transition` moves no deleted campaign; the database refuses any other write that would leave
 * one there: the check `campaigns_deleted_not_running`, migration 0063), so `deleted_at` changes
 * no answer; it is said anyway, in this one place, so that the three agree by construction.
 */
export const mayStillSendSql = (campaign: SQL): SQL => sql`(${campaign}.status in ('scheduled', 'sending', 'paused') and ${campaign}.deleted_at is null)`;

/** A campaign whose mailbox is gone (its `mailbox_id` set null): no row has this id, so the gate halts. */
export const NO_MAILBOX = '00000000-0000-0000-0000-000000000000';

/**
 * Before the gate statement, in its transaction (a server's; PGlite runs one statement at a time):
 * the mailbox row, shared (1:1 mail's claim takes it too, and reads its answer: messages.service.ts). The claim takes the workspace's key later (its messages row's foreign
 * key), so mailbox before workspace — the order a member leaving takes them in (their mailboxes
 * marked deleted, then the workspace locked for the membership change). The workspace first
 * deadlocked with that leave (a reviewer's finding).
 */
export const lockSendingMailboxSql = (mailboxId: string): SQL =>
  sql`select status = 'active' and deleted_at is null as sending, deleted_at is not null as gone from mailboxes where id = ${mailboxId}::uuid for share`;

/**
 * SQL: the rows (locked, in id order), their campaign's state and the verdict of every
 * re-check, as one select; the single place where the rules of invariant 1 and P-10 meet the
 * ledger. Run under the address locks, which the caller took earlier in the same transaction
 * (so this statement's snapshot already sees any opt-out that committed before). Only the
 * checks that can apply are in it: a first step has no earlier step to have been answered,
 * auto-answered or bounced, and a transactional campaign needs no consent (the gate runs per message group: a
 * smaller statement is a cheaper plan). All rows are of `campaign`.
 *
 * The campaign's state is read with a share lock on its row (`for share`): a pause, cancel or
 * delete updates that row, so either it commits first and this reads the state it wrote (a
 * locking read follows a row updated since the snapshot to its newest version), or it waits
 * until this claim's transaction has ended. Read from the snapshot alone, a claim whose statement
 * began before a cancel and then waited for a send's row lock (another worker's reservation)
 * claimed after the cancel had answered — and its mail went out after the user was told the
 * campaign was cancelled (a cancel no longer waits for the campaign's queued rows itself:
 * cancelled-sends.ts).
 *
 * The mailbox is read the same way (`for share`), and the caller locked it so already, before the
 * workspace's key (lockSendingMailboxSql): a disconnect that commits while the claim waits is seen,
 * and halts it — read from the snapshot, a worker went on claiming and sending from a mailbox
 * whose disconnect had answered, through a token Google had not revoked (the address connected in
 * another workspace: an attacker's finding).
 */
export function gateSql(sendIds: string[], campaign: CampaignRow, mailboxId: string, laterSteps: boolean, now: Date, autoReplyDelayDays: number): SQL {
  const hold = laterSteps ? autoReplyHoldSql(LEDGER_ROW, autoReplyDelayDays) : sql`(select null::timestamptz as until)`;
  const at = sql`${now.toISOString()}::timestamptz`;
  // A launched campaign's window never changes (only drafts are edited): the campaign row the caller holds is its window.
  const windowOpen = sql.raw(isInsideWindow(campaign.sendingWindow, now) ? 'true' : 'false');
  return sql`
    select s.id, s.status, s.lease_owner, coalesce(s.lease_expires_at < ${at}, true) as lease_expired, s.attempts,
      s.email, s.contact_id, s.rfc822_message_id, (select c.status from campaigns c where c.id = s.campaign_id for share) as campaign_status,
      coalesce((select m.status = 'active' and m.deleted_at is null from mailboxes m where m.id = ${mailboxId}::uuid for share), false) as mailbox_sending,
      hold.until as held_until,
      ${windowOpen} and s.due_at <= ${at} and coalesce(hold.until <= ${at}, true) as due,
      case ${refusalArms({ topic: campaign.topic, consentNeeded: campaign.kind === 'marketing' }, laterSteps)} end as skip_reason
    from campaign_sends s
    -- The send's contact read once, by its key, for both of its checks (deleted, address changed).
    left join lateral (select c.deleted_at, c.email from contacts c where c.id = s.contact_id${PROBE_ONLY}) ct on true
    -- An aggregate: evaluated once per send (a subquery in the select list would run for each use).
    left join lateral ${hold} hold on true
    where s.id = any(${pgArray(sendIds)}::uuid[])
    order by s.id
    for update of s`;
}
