import { UnprocessableError } from '../errors.js';
import { GMAIL_SCOPES } from '../gmail/gmail-client.js';
import type { MailboxRow } from '../gmail/mailboxes.repo.js';
import { mailboxNeedsReconnect } from '../gmail/mailboxes.service.js';

/**
 * Why a campaign may not send from its mailbox right now, the one rule the launch, a resume, the
 * send worker and the campaign's `waitingFor` share:
 *  - `mailbox_needs_reconnect`: Google no longer accepts its grant (the worker pauses the campaign);
 *  - `follow_ups_need_sync`: the campaign has follow-up steps, which stop for whoever replied or
 *    bounced, and the mailbox cannot be read (connected, or reconnected, send-only): every
 *    follow-up would go out regardless (launch and resume refuse; the worker pauses);
 *  - `mailbox_syncing`: a sequence whose mailbox was reconnected and has not been read since, or
 *    whose latest sync pass failed — a reply that arrived while it could not be read must stop a
 *    follow-up first (an attacker's finding: with sync failing, a follow-up went to someone who had
 *    replied). The reconnect starts that sync at once, and a failed pass is retried at the next
 *    poll; meanwhile the campaign waits (the worker sends nothing for it, a paused one resumes
 *    after). A sync that keeps failing keeps it waiting: the mailbox shows why.
 */
export type MailboxHold = 'mailbox_needs_reconnect' | 'follow_ups_need_sync' | 'mailbox_syncing';

type HeldMailbox = Pick<MailboxRow, 'status' | 'syncEnabled' | 'scopes' | 'lastSyncAt' | 'lastSyncFailedAt' | 'connectedAt'>;

/** What sync needs to read the mailbox at all (sync.service.ts skips a mailbox without both). */
const canBeRead = (mailbox: HeldMailbox) => mailbox.syncEnabled && mailbox.scopes.includes(GMAIL_SCOPES.readonly);

export function mailboxHold(campaign: { steps: readonly unknown[] }, mailbox: HeldMailbox): MailboxHold | undefined {
  if (mailbox.status !== 'active') return 'mailbox_needs_reconnect';
  if (campaign.steps.length === 0) return undefined;
  if (!canBeRead(mailbox)) return 'follow_ups_need_sync';
  // Read before, then (re)connected since its last good sync: what came meanwhile is unread.
  if (mailbox.lastSyncAt && mailbox.lastSyncAt < mailbox.connectedAt) return 'mailbox_syncing';
  // The latest pass failed: unread since then (or never read at all, its first pass failing).
  if (mailbox.lastSyncFailedAt && (!mailbox.lastSyncAt || mailbox.lastSyncFailedAt > mailbox.lastSyncAt)) return 'mailbox_syncing';
  return undefined;
}

/**
 * The worker lifting a pause of its own asks one thing more of a sequence's mailbox: a good sync
 * since it was (re)connected, even when it was never read at all. (`mailboxHold` lets a mailbox
 * never read send while no pass of it has failed: a new connection has missed nothing, and its
 * first sync comes with the poller. One reconnected after its sync had never succeeded has: an
 * attacker's finding.)
 */
export function resumeHold(campaign: { steps: readonly unknown[] }, mailbox: HeldMailbox): MailboxHold | undefined {
  const hold = mailboxHold(campaign, mailbox);
  if (hold || campaign.steps.length === 0) return hold;
  return mailbox.lastSyncAt ? undefined : 'mailbox_syncing';
}

/** Launching or resuming a campaign its mailbox cannot serve is refused, saying what to do first; one waiting for a sync is not (it sends once that is done). */
export function refuseHold(hold: MailboxHold | undefined, doing: 'launching' | 'resuming'): void {
  if (hold === 'mailbox_needs_reconnect') throw mailboxNeedsReconnect(`Reconnect the mailbox before ${doing}`);
  if (hold === 'follow_ups_need_sync') {
    throw new UnprocessableError('follow_ups_need_sync', 'Follow-up steps stop when someone replies or a mail bounces, which a send-only mailbox cannot see: connect it with sync, or remove the steps');
  }
}

/** The worker's own pauses, which it lifts itself once `mailboxHold` is clear. */
export const MAILBOX_PAUSES = ['mailbox_needs_reconnect', 'follow_ups_need_sync', 'mailbox_syncing'] as const;
