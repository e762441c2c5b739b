import { againAfterConcurrencyFailure } from '../db/pg-errors.js';
import type { Logger } from '../logger.js';
import type { AddressHasher } from '../suppression/address-hash.js';
import { deletionCompleted } from './deletion.js';
import type { PurgeKind, PurgeQueries, PurgeRepo } from './purge.repo.js';

/*
 * The purge job (P-13): everything marked deleted whose `purge_after` has passed is removed
 * for real. Mailboxes first (their mail goes before a closing user's), then contacts,
 * campaigns, closed workspaces and closed accounts. Each item is one transaction that also
 * writes its `deletion.completed` audit row, so an interrupted run leaves no half-purged
 * item, and the next run (daily, or `npm run purge`) simply finds what is still due.
 */

const ORDER: readonly PurgeKind[] = ['mailbox', 'contact', 'campaign', 'workspace', 'user'];
const BATCH = 100;

export type PurgeCounts = Record<PurgeKind, number>;

export function createPurgeService(deps: { repo: PurgeRepo; hashAddress: AddressHasher; now?: () => Date; logger?: Logger }) {
  const { repo, hashAddress } = deps;
  const now = deps.now ?? (() => new Date());

  /**
   * Purges one item in its own transaction; false when it was no longer there to purge (another
   * run took it). Run again when it read something that changed before its locks (ReadChangedBeforeLock).
   */
  async function purgeItem(kind: PurgeKind, id: string, purgeAfter: Date): Promise<boolean> {
    return againAfterConcurrencyFailure(() => repo.transaction(async (tx: PurgeQueries) => {
      if (kind === 'user') {
        const done = await tx.purgeUser(id);
        if (!done) return false;
        for (const workspaceId of done.workspaceIds) await tx.audit(deletionCompleted(workspaceId, 'user', id, purgeAfter, done.removed));
        return true;
      }
      const done =
        kind === 'contact'
          ? await tx.purgeContact(id, hashAddress)
          : kind === 'campaign'
            ? await tx.purgeCampaign(id)
            : kind === 'mailbox'
              ? await tx.purgeMailbox(id)
              : await tx.purgeWorkspace(id);
      if (!done) return false;
      await tx.audit(deletionCompleted(done.workspaceId, kind, id, purgeAfter, done.removed));
      return true;
    }));
  }

  return {
    /**
     * One pass over everything due. `maxItems` stops early (a bounded run; what is left is
     * purged by the next one). Returns how many items of each kind were purged.
     */
    async runOnce(options: { maxItems?: number } = {}): Promise<PurgeCounts> {
      const counts: PurgeCounts = { mailbox: 0, contact: 0, campaign: 0, workspace: 0, user: 0 };
      let budget = options.maxItems ?? Number.POSITIVE_INFINITY;
      const at = now();
      for (const kind of ORDER) {
        for (;;) {
          if (budget <= 0) return counts;
          const due = await repo.due(kind, at, Math.min(BATCH, budget));
          if (due.length === 0) break;
          let progressed = false;
          for (const item of due) {
            if (budget <= 0) return counts;
            budget -= 1;
            if (await purgeItem(kind, item.id, item.purgeAfter)) {
              counts[kind] += 1;
              progressed = true;
            }
          }
          if (due.length < BATCH || !progressed) break;
        }
      }
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      if (total > 0) deps.logger?.info({ purged: counts }, 'deleted items purged');
      return counts;
    },
  };
}

export type PurgeService = ReturnType<typeof createPurgeService>;
