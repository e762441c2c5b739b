import type { Logger } from '../logger.js';
import { GMAIL_SCOPES } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxRow } from './mailboxes.repo.js';
import type { MailboxService } from './mailboxes.service.js';
import { safeErrorFields } from './sync-support.js';
import type { SyncRepo } from './sync.repo.js';
import { DAY_MS } from '../time.js';

/** Gmail watches last 7 days; a watch with less than 6 left is renewed, so each one is renewed about daily. */
const WATCH_RENEW_BEFORE_MS = 6 * DAY_MS;

/*
 * Push: a `users.watch` per syncing mailbox on the Pub/Sub topic. Set the moment a mailbox
 * with sync connects (or reconnects: a new grant, a new watch), so its first reply or bounce
 * arrives by push in seconds rather than at the next poll; renewed daily by the hourly job.
 */
export function createWatches(deps: { repo: SyncRepo; mailboxes: MailboxService; pushTopic?: string; logger: Logger; now: () => Date }) {
  const { repo, mailboxes, logger } = deps;
  const background = new Set<Promise<unknown>>();

  /** users.watch now; false (logged, never thrown) when Gmail refuses: polling still covers the mailbox. */
  async function watch(mailbox: MailboxRow, why: 'connected' | 'renewal'): Promise<boolean> {
    const topic = deps.pushTopic;
    if (!topic || !mailbox.syncEnabled || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return false;
    try {
      const result = await mailboxes.withGmail(mailbox, (api) => api.watch(topic));
      await repo.recordWatch(mailbox.id, result.expiresAt ?? null);
      return true;
    } catch (error) {
      const details = error instanceof GmailError ? { kind: error.kind, status: error.status, reason: error.reason } : safeErrorFields(error);
      logger.warn({ mailboxId: mailbox.id, why, ...details }, 'setting the Gmail watch failed; polling still covers this mailbox');
      return false;
    }
  }

  return {
    /** users.watch for syncing mailboxes whose watch is missing or has less than 6 of its 7 days left. */
    async renewWatches() {
      if (!deps.pushTopic) return { renewed: 0, failed: 0 };
      let renewed = 0;
      let failed = 0;
      for (const mailbox of await repo.listWatchesDue(new Date(deps.now().getTime() + WATCH_RENEW_BEFORE_MS))) {
        if (!mailbox.scopes.includes(GMAIL_SCOPES.readonly)) continue;
        if (await watch(mailbox, 'renewal')) renewed += 1;
        else failed += 1;
      }
      return { renewed, failed };
    },

    /**
     * A mailbox was just stored by the OAuth callback: watch it now, in the background (the
     * person's redirect does not wait for Gmail). `idle()` waits for it.
     */
    mailboxConnected(mailbox: MailboxRow): void {
      if (!deps.pushTopic || !mailbox.syncEnabled) return;
      const run = watch(mailbox, 'connected').finally(() => background.delete(run));
      background.add(run);
    },

    async idle(): Promise<void> {
      while (background.size > 0) await Promise.allSettled([...background]);
    },
  };
}
