import { GMAIL_SCOPES } from '../gmail/gmail-client.js';
import { GmailError } from '../gmail/gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from '../gmail/mailboxes.repo.js';
import { UNDECIDED, type SentCopies } from '../gmail/sent-copy.js';
import type { Logger } from '../logger.js';
import type { CampaignRow, CampaignsRepo } from './campaigns.repo.js';
import type { SendCandidate, SendLease, SendLedgerRepo, SentInput } from './send-ledger.repo.js';

/**
 * The owner recovery takes expired leases over as: never the process's sending owner, or a send
 * still stuck in this process (a long rate-limit pause outliving its lease) would pass its own
 * lease checks after recovery took it over here, as it cannot after a take-over elsewhere.
 */
export const recoveryOwnerOf = (workerId: string) => `${workerId}/recovery`;
/** Whether a lease is held by a recovery (recoveryOwnerOf), not by the request or worker that claimed the send. */
export const isRecoveryOwner = (owner: string) => owner.endsWith(recoveryOwnerOf(''));

/** Mailbox searches before a send of unknown outcome counts as not sent (read-scope mailboxes); the 1:1 recovery too. */
export const RESOLVE_LOOKS = 3;
/**
 * How long a send whose mailbox cannot be searched now (not `active`: waiting to be
 * reconnected) is left before it is looked at again, unless the reconnect makes it due
 * sooner (parked-sends.ts). Shared with the 1:1 recovery.
 */
export const UNSEARCHABLE_RECHECK_MS = 5 * 60_000;
/** A send claimed before leases existed has no messages row id to fence on. */
const NO_MESSAGE_ROW = '00000000-0000-0000-0000-000000000000';

export interface SendRecorder {
  recordSent(
    campaign: CampaignRow,
    send: SendCandidate,
    lease: SendLease,
    gmail: { id: string; threadId: string },
    subject: string,
    mailbox: MailboxRow,
    /** How the record is written (default: group-committed with others of its campaign and mailbox). */
    write?: (record: SentInput) => Promise<boolean>,
  ): Promise<void>;
}

export interface SendRecoveryDeps {
  repo: CampaignsRepo;
  ledger: SendLedgerRepo;
  mailboxRepo: MailboxesRepo;
  logger: Logger;
  workerId: string;
  leaseMs: number;
  resolveDelayMs?: number;
  recorder: SendRecorder;
  /** Did Gmail store it: the search, what sync saw, and on the last look a listing of Sent (gmail/sent-copy.ts). */
  sentCopies: SentCopies;
  now: () => Date;
  /**
   * More recovery of the same kind elsewhere (1:1 sends), run after the campaign ledger's, in
   * the same pass (`round`): its last looks carry on the same walk of each mailbox's Sent.
   */
  alsoRecover?: (asOf: Date, round: Date) => Promise<number>;
}

/**
 * Sends whose lease expired: their worker died mid-send, or Gmail gave no clear answer and
 * the mailbox is due to be searched. Invariant 3: a send is resolved by looking for its
 * Message-ID in the mailbox (gmail/sent-copy.ts) — found means sent; absent after
 * RESOLVE_LOOKS looks spread out for Gmail's index means not sent, and it is queued again.
 * A mailbox that cannot be read (send-only) cannot be asked, so such a send ends
 * `failed/outcome_unknown`: at most once wins over at least once. Every verdict gives way to
 * a copy sync recorded on the attempt's row (then it is sent).
 */
export function createSendRecovery(deps: SendRecoveryDeps) {
  const { repo, ledger, logger, workerId, now } = deps;
  const resolveDelayMs = deps.resolveDelayMs ?? 15_000;
  /** Each look waits four times longer than the one before: Gmail's index usually needs seconds, rarely minutes. */
  const lookDelay = (looksDone: number) => resolveDelayMs * 4 ** looksDone;

  /** Leaves a send of unknown outcome under this lease until its next search is due. */
  async function scheduleLook(lease: SendLease, looksDone: number): Promise<void> {
    await ledger.awaitResolution(lease, new Date(now().getTime() + lookDelay(looksDone)), looksDone);
  }

  /** `round`: when this recovery pass began (its last looks share one walk of each mailbox's Sent). */
  async function resolveOne(row: Awaited<ReturnType<SendLedgerRepo['expiredLeases']>>[number], asOf: Date, round: Date): Promise<boolean> {
    // A campaign deleted while this send was in flight still needs the answer (did it go
    // out?); its ledger goes with the purge later.
    const campaign = await repo.findByIdIncludingDeleted(row.workspace_id, row.campaign_id);
    const mailbox = campaign?.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(campaign.mailboxId) : undefined;
    // A mailbox waiting to be reconnected cannot be searched, and the send must stay `sending`
    // (never re-sent, no search counted) until one can. It must not keep its place either:
    // expiredLeases reads the oldest expiries first, 100 at a time, so a hundred such sends
    // left as they were would be read by every pass and no other send would ever be
    // recovered. Taking the lease over until a later look moves it behind the sends that
    // expired before that look; as every row a pass reads leaves it with a lease later than
    // the pass (resolved, taken here, or searched and rescheduled), a send that expired at T
    // waits at most for the sends that expired before T. This, not another order or limit in
    // the query: any order needs a row's place to change once it was read, and the lease
    // expiry is that place, changed by the usual fenced take-over. (The campaign is always
    // there: its sends go with it by cascade; were it not, the send is kept the same way.)
    // Parked, it is marked so that the mailbox's reconnect makes it due at once, and only
    // while the mailbox still cannot be searched (parked-sends.ts).
    const searchable = campaign !== undefined && (!mailbox || mailbox.status === 'active');
    const taken = await ledger.takeOver({
      id: row.id,
      oldOwner: row.lease_owner,
      attempt: row.attempts,
      owner: workerId,
      now: asOf,
      until: new Date(now().getTime() + (searchable ? deps.leaseMs : UNSEARCHABLE_RECHECK_MS)),
      parkedFor: searchable ? undefined : { mailboxId: mailbox?.id ?? null },
    });
    if (!taken || !searchable) return false;
    const lease: SendLease = { id: row.id, owner: workerId, attempt: row.attempts, messageRowId: row.message_id ?? NO_MESSAGE_ROW };
    const send: SendCandidate = {
      id: row.id,
      campaignId: row.campaign_id,
      step: row.step,
      contactId: row.contact_id,
      recipientId: row.recipient_id,
      email: row.email,
      rfc822MessageId: row.rfc822_message_id,
      attempts: row.attempts,
    };
    const messageRowId = row.message_id ?? null;
    /**
     * A verdict (`failed/outcome_unknown`, or queued again) gives way to a copy sync recorded on
     * the attempt's row — before the mailbox lost read access, or at this very moment: then
     * the send is recorded sent. (Lease lost: nothing is seen here either.)
     */
    const verdict = async (settled: Promise<boolean>): Promise<boolean> => {
      if (await settled) return true;
      const seen = messageRowId ? await deps.sentCopies.seenBySync(messageRowId) : undefined;
      if (!seen) return false;
      // Its mailbox gone (disconnected since): recorded on its own, no next step to queue.
      if (!mailbox) return ledger.markSent(lease, seen, now(), campaign.subject);
      await deps.recorder.recordSent(campaign, send, lease, seen, campaign.subject, mailbox);
      return true;
    };
    try {
      // Cannot be asked: at most once wins over at least once.
      if (!mailbox || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return await verdict(ledger.markUnknownUnseen(lease));
      const lastLook = row.resolve_looks + 1 >= RESOLVE_LOOKS ? { round } : undefined;
      const found = await deps.sentCopies.find(mailbox, { rfc822MessageId: send.rfc822MessageId, messageRowId }, lastLook);
      if (found && found !== UNDECIDED) {
        await deps.recorder.recordSent(campaign, send, lease, found, campaign.subject, mailbox);
        return true;
      }
      if (!lastLook) {
        await scheduleLook(lease, row.resolve_looks + 1);
        return false;
      }
      // Too much sent since to tell (at most once wins, as for a mailbox that cannot be read), or not sent: queued again.
      return await verdict(found === UNDECIDED ? ledger.markUnknownUnseen(lease) : ledger.requeueUnsent(lease, now()));
    } catch (error) {
      // The lease is ours until it expires; the next pass (here or elsewhere) looks again.
      logger.warn({ sendId: row.id, err: error instanceof GmailError ? error.message : 'error' }, 'could not resolve a send yet');
      return false;
    }
  }

  /** One pass over expired leases as of `asOf` (default now); returns how many sends it resolved. */
  async function recoverExpired(asOf: Date = now()): Promise<number> {
    let resolved = 0;
    const round = now();
    for (const row of await ledger.expiredLeases(asOf)) {
      if (await resolveOne(row, asOf, round)) resolved += 1;
    }
    if (deps.alsoRecover) resolved += await deps.alsoRecover(asOf, round);
    return resolved;
  }

  return { scheduleLook, recoverExpired };
}
