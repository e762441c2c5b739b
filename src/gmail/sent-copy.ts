import type { Logger } from '../logger.js';
import { GMAIL_SCOPES, type MailboxGmail } from './gmail-client.js';
import type { MailboxRow } from './mailboxes.repo.js';

export interface GmailIds {
  id: string;
  threadId: string;
}

/** The longest a last look waits for the mailbox's sync pass before it judges without it. */
export const SENT_COPY_SYNC_WAIT_MS = 60_000;

export interface SentCopyDeps {
  withGmail: <T>(mailbox: MailboxRow, work: (api: MailboxGmail) => Promise<T>) => Promise<T>;
  /** The Gmail ids sync recorded on a send of ours it met among the mailbox's sent mail (sync.repo.ts `seenSend`). */
  seenBySync: (messageRowId: string) => Promise<GmailIds | undefined>;
  /** One sync pass of the mailbox now, or the one already running for it (sync.service.ts `syncMailbox`). */
  syncNow: (mailboxId: string) => Promise<{ status: string }>;
  logger: Logger;
  syncWaitMs?: number;
}

/**
 * Did Gmail store a send of ours whose answer we never had (a timeout, a crash)? Invariant 3:
 * found means sent, never sent again. Asked by recovery, campaign and 1:1 alike, once per look.
 *
 * 1. The search `rfc822msgid:<ours>`. It reads Gmail's search index, which can lag behind what
 *    Gmail stores: a message stored but not yet indexed is "not found".
 * 2. What sync saw. Sync reads the mailbox's history, Gmail's own record of what it stored,
 *    and records the Gmail ids on a send of ours it meets there whose outcome is still open.
 * 3. On the last look, before "not found" becomes the verdict (campaign sends are then queued
 *    again, a 1:1 send reported not sent), the mailbox's sync runs first, and (2) is asked again.
 *    So a message Gmail stored before that pass read its history is found, however far behind
 *    the search index is. A pass that cannot finish in time (Gmail failing, a long resync, another
 *    process's pass) leaves the verdict to (1) and (2) as they stand, as before this rule; what
 *    Gmail stores later still is beyond anything we can ask.
 */
export function createSentCopyFinder(deps: SentCopyDeps) {
  const syncWaitMs = deps.syncWaitMs ?? SENT_COPY_SYNC_WAIT_MS;

  async function syncWithin(mailbox: MailboxRow): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('timed_out'), syncWaitMs);
    });
    try {
      return await Promise.race([deps.syncNow(mailbox.id).then((outcome) => outcome.status), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  return async function findSentCopy(mailbox: MailboxRow, send: { rfc822MessageId: string; messageRowId: string | null }, lastLook: boolean): Promise<GmailIds | undefined> {
    const found = await deps.withGmail(mailbox, (gmail) => gmail.findByRfc822MessageId(send.rfc822MessageId));
    if (found.length > 0) return found[0];
    if (!send.messageRowId) return undefined;
    const seen = await deps.seenBySync(send.messageRowId);
    const readable = mailbox.syncEnabled && mailbox.scopes.includes(GMAIL_SCOPES.readonly);
    if (seen || !lastLook || !readable) return seen;
    const outcome = await syncWithin(mailbox);
    if (outcome !== 'synced') deps.logger.warn({ mailboxId: mailbox.id, sync: outcome }, 'a send not found by search is judged without a fresh sync pass');
    return deps.seenBySync(send.messageRowId);
  };
}

export type FindSentCopy = ReturnType<typeof createSentCopyFinder>;
