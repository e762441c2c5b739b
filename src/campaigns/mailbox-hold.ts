import type { MailboxRow } from '../gmail/mailboxes.repo.js';

/**
 * Why a campaign may not send from its mailbox right now, the one rule the launch, the send
 * worker and a resume share:
 *  - `mailbox_needs_reconnect`: Google no longer accepts its grant;
 *  - `follow_ups_need_sync`: the campaign has follow-up steps, which stop for whoever replied or
 *    bounced, and the mailbox is send-only (connected, or reconnected, without read access):
 *    every follow-up would go out regardless.
 */
export type MailboxHold = 'mailbox_needs_reconnect' | 'follow_ups_need_sync';

export function mailboxHold(campaign: { steps: readonly unknown[] }, mailbox: Pick<MailboxRow, 'status' | 'syncEnabled'>): MailboxHold | undefined {
  if (mailbox.status !== 'active') return 'mailbox_needs_reconnect';
  if (campaign.steps.length > 0 && !mailbox.syncEnabled) return 'follow_ups_need_sync';
  return undefined;
}

/**
 * The worker's own pauses, which it lifts itself: the two holds above, and `mailbox_syncing` —
 * reconnected, but what arrived while it could not be read (a reply, a bounce) is not read yet.
 */
export const MAILBOX_PAUSES = ['mailbox_needs_reconnect', 'follow_ups_need_sync', 'mailbox_syncing'] as const;

/** A mailbox with sync whose last good sync is older than its (re)connection: mail may wait unread. */
export const unreadSinceConnected = (mailbox: Pick<MailboxRow, 'syncEnabled' | 'lastSyncAt' | 'connectedAt'>) =>
  mailbox.syncEnabled && !(mailbox.lastSyncAt && mailbox.lastSyncAt >= mailbox.connectedAt);
