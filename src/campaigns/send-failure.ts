import { GMAIL_SCOPES, SEND_OUTCOME_UNKNOWN } from '../gmail/gmail-client.js';
import type { GmailError } from '../gmail/gmail-errors.js';
import type { MailboxRow } from '../gmail/mailboxes.repo.js';
import type { Logger } from '../logger.js';
import type { CampaignRow } from './campaigns.repo.js';
import type { MailboxHold } from './mailbox-hold.js';
import type { SendCandidate, SendLease, SendLedgerRepo } from './send-ledger.repo.js';

/** What the send worker does next after one send: go on with the batch, or stop it. */
export type Outcome = 'sent' | 'next' | 'stop';

const MAX_ATTEMPTS = 5;

interface FailureDeps {
  ledger: SendLedgerRepo;
  logger: Logger;
  now: () => Date;
  /** Recovery's mailbox search for a send of unknown outcome (send-recovery.ts). */
  scheduleLook: (lease: SendLease, looks: number) => Promise<unknown>;
  /** Pauses the campaign until its mailbox can serve it (the send worker's). */
  pauseFor: (campaign: CampaignRow, hold: Exclude<MailboxHold, 'mailbox_syncing'>) => Promise<void>;
}

/**
 * What Gmail's refusal of a claimed send means for its ledger row (send-worker.ts; the states in
 * SEND-LEDGER.md): an unknown outcome is never retried blindly, a revoked grant pauses the
 * campaign, a rate limit or a temporary error requeues the send after its wait (up to
 * MAX_ATTEMPTS), anything else fails it.
 */
export function createFailureRecorder(deps: FailureDeps) {
  const { ledger, logger, now } = deps;
  const after = (ms: number) => new Date(now().getTime() + ms);

  return async function recordFailure(campaign: CampaignRow, mailbox: MailboxRow, send: SendCandidate, lease: SendLease, error: GmailError): Promise<Outcome> {
    if (error.reason === SEND_OUTCOME_UNKNOWN) {
      // It may have gone out: never retried blindly. A mailbox that can be read is searched
      // later (Gmail's index lags); one that cannot is at most once: outcome_unknown.
      if (mailbox.scopes.includes(GMAIL_SCOPES.readonly)) {
        await deps.scheduleLook(lease, 0);
        logger.warn({ sendId: send.id }, 'send outcome unknown; the mailbox will be searched for it');
      } else {
        await ledger.markFailed(lease, SEND_OUTCOME_UNKNOWN);
        logger.warn({ sendId: send.id }, 'send outcome unknown on a send-only mailbox; recorded outcome_unknown');
      }
      return 'stop';
    }
    if (error.kind === 'auth_revoked') {
      await ledger.requeue(lease, now(), 'auth_revoked');
      await deps.pauseFor(campaign, 'mailbox_needs_reconnect');
      return 'stop';
    }
    if (error.kind === 'rate_limited' || error.kind === 'temporary') {
      if (lease.attempt >= MAX_ATTEMPTS) {
        await ledger.markFailed(lease, error.kind);
        return 'next';
      }
      const waitMs = error.retryAfterSeconds ? error.retryAfterSeconds * 1000 : 30_000 * 2 ** (lease.attempt - 1);
      await ledger.requeue(lease, after(waitMs), error.kind);
      return 'stop';
    }
    await ledger.markFailed(lease, error.reason ?? error.kind);
    return 'next';
  };
}
