import type { Logger } from '../logger.js';
import type { AuditEntry } from '../privacy/audit.js';
import { purgeDate } from '../privacy/deletion.js';
import type { GmailClient } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { Db } from '../db/connect.js';
import { createMailboxesRepo, type MailboxesRepo, type MailboxRow } from './mailboxes.repo.js';
import { tokenContext, type TokenCipher } from './token-cipher.js';

/*
 * P-06, P-13: a disconnected mailbox's grant is revoked at Google and our copy deleted. Deleting
 * does not wait for Google: when Google does not answer, the encrypted refresh token stays on the
 * deleted row for one use only, and the hourly job asks again (`retryRevocations`) until Google
 * answers or the row is purged. Google's grant is the Google account's for our client, whichever
 * of its tokens revokes it: while the address is connected elsewhere, it is not revoked at all.
 */

type Revocation = 'revoked' | 'retry' | 'failed' | 'in_use';

export function createMailboxRevocation(deps: {
  repo: MailboxesRepo;
  gmail: Pick<GmailClient, 'revoke'>;
  cipher: TokenCipher;
  logger: Logger;
  purgeAfterDays: number;
  now: () => Date;
  /** What the service forgets of a mailbox once it is gone (its pacer state, its cached client). */
  afterRemoved: (mailboxId: string) => Promise<void>;
}) {
  const { repo, gmail, cipher, logger, now } = deps;

  /**
   * Asks Google to revoke the mailbox's grant: `revoked`, `retry` (Google did not answer: ask again
   * later), `failed` (it cannot be asked: the token cannot be read, or Google refused for good) or
   * `in_use`: while the same address is connected elsewhere (another workspace, or connected again
   * here) revoking would disconnect that too — our copy is wiped and Google is not asked.
   */
  async function revokeAtGoogle(mailbox: MailboxRow): Promise<Revocation> {
    if ((await repo.findByEmailUnscoped(mailbox.email)).some((other) => other.id !== mailbox.id)) return 'in_use';
    try {
      await gmail.revoke(cipher.decrypt(mailbox.refreshTokenEnc, tokenContext(mailbox.id, 'refresh')));
      return 'revoked';
    } catch (error) {
      const retry = error instanceof GmailError && (error.kind === 'temporary' || error.kind === 'rate_limited');
      logger.warn({ mailboxId: mailbox.id, err: error }, retry ? 'Google did not answer the revocation; it is asked again later' : 'revoking at Google failed');
      return retry ? 'retry' : 'failed';
    }
  }

  /**
   * In the caller's transaction: the mailbox's synced data deleted, the row marked deleted (its
   * refresh token kept when Google is still to be asked), audited. False when it was gone already.
   */
  async function removeRow(tx: Omit<MailboxesRepo, 'transaction'>, mailbox: MailboxRow, revocation: Revocation | 'pending', auditEntry: (purgeAfter: Date) => AuditEntry): Promise<boolean> {
    const at = now();
    const purgeAfter = purgeDate(at, deps.purgeAfterDays);
    // Pending (a member leaving, inside their membership change): no row lock and no bulk delete
    // there — the change holds its workspace's row, which every insert naming the workspace waits
    // for; a `for update` of the mailbox would also deadlock with a sync insert holding its key
    // share. Its synced data is deleted after the commit (`revokeRemoved`, else the hourly job).
    if (revocation !== 'pending') {
      await tx.lockById(mailbox.workspaceId, mailbox.id);
      await tx.deleteSyncedMessages(mailbox.id);
    }
    if (!(await tx.markDeleted(mailbox.workspaceId, mailbox.id, at, purgeAfter, { revokeLater: revocation === 'retry' || revocation === 'pending' }))) return false;
    const requested = auditEntry(purgeAfter);
    // The compliance report lists scopes per mailbox from these rows (P-01, P-18).
    await tx.audit({
      workspaceId: mailbox.workspaceId,
      actor: requested.actor,
      requestId: requested.requestId,
      action: 'mailbox.disconnected',
      subjectType: 'mailbox',
      subjectId: mailbox.id,
      detail: {
        scopes: mailbox.scopes,
        policyVersion: mailbox.disclosureVersion,
        ownerUserId: mailbox.userId,
        revokedAtGoogle: revocation === 'revoked',
        ...(revocation === 'retry' ? { revocationRetried: true } : {}),
        ...(revocation === 'pending' ? { revocationAfterCommit: true } : {}),
        ...(revocation === 'in_use' ? { grantInUse: true } : {}),
      },
    });
    await tx.audit(requested);
    return true;
  }

  /**
   * Google asked again about a removed mailbox's kept token; wiped once it answered (or cannot be
   * asked), audited. Its synced data is deleted first (already gone unless it was removed inside
   * another change's transaction, `removeWithin`).
   */
  async function settleRevocation(mailbox: MailboxRow): Promise<boolean> {
    await repo.deleteSyncedMessages(mailbox.id);
    const revocation = await revokeAtGoogle(mailbox);
    if (revocation === 'retry' || !(await repo.wipeRefreshToken(mailbox.id))) return false;
    await repo.audit({
      workspaceId: mailbox.workspaceId,
      actor: 'system:worker',
      action: 'mailbox.revocation_retried',
      subjectType: 'mailbox',
      subjectId: mailbox.id,
      detail: { revokedAtGoogle: revocation === 'revoked', ...(revocation === 'in_use' ? { grantInUse: true } : {}) },
    });
    return true;
  }

  return {
    /** Revokes at Google (or leaves that to the retry job), then deletes the synced data and the tokens and marks the mailbox deleted, audited. */
    async revokeAndRemove(mailbox: MailboxRow, auditEntry: (purgeAfter: Date) => AuditEntry) {
      const revocation = await revokeAtGoogle(mailbox);
      await repo.transaction((tx) => removeRow(tx, mailbox, revocation, auditEntry));
      await deps.afterRemoved(mailbox.id);
    },

    /**
     * A member's mailboxes of one workspace, removed inside the caller's transaction (`db`), so
     * they go with the change that removes them (a member leaving) or not at all: marked deleted,
     * the refresh token kept for one use, audited. Their synced data is deleted and Google asked
     * after the commit (`revokeRemoved`), and should that never happen, by the hourly job.
     */
    async removeWithin(db: Db, owner: { workspaceId: string; userId: string }, auditEntry: (mailbox: MailboxRow, purgeAfter: Date) => AuditEntry): Promise<MailboxRow[]> {
      const tx = createMailboxesRepo(db);
      const removed: MailboxRow[] = [];
      for (const mailbox of await tx.listLiveOf(owner)) {
        if (await removeRow(tx, mailbox, 'pending', (purgeAfter) => auditEntry(mailbox, purgeAfter))) removed.push(mailbox);
      }
      return removed;
    },

    /** After `removeWithin` committed: Google asked now, and what the service keeps of each forgotten. */
    async revokeRemoved(mailboxes: MailboxRow[]) {
      for (const mailbox of mailboxes) {
        await settleRevocation(mailbox).catch((error: unknown) => logger.warn({ mailboxId: mailbox.id, err: error }, 'revoking a removed mailbox failed; the hourly job asks again'));
        await deps.afterRemoved(mailbox.id);
      }
    },

    /**
     * A grant Google just issued for a connection we then refused to store (whoever started it is
     * no longer a member; the address is a teammate's; sending was not allowed): revoked, so it
     * does not stay listed at Google for an app that will never use it — unless the address is
     * connected anywhere, since Google's grant is the account's and revoking it would cut that
     * connection too. Best effort: a failure is logged, and the grant is then the user's to remove.
     * Nothing locks between the check and the revocation: a connection of the same address
     * committing in that moment elsewhere would lose its grant (and show needs_reconnect at its
     * next call) — a window of one request to Google, taken over leaving grants behind.
     */
    async revokeUnstoredGrant(email: string, token: string) {
      if ((await repo.findByEmailUnscoped(email)).length > 0) return;
      await gmail.revoke(token).catch((error: unknown) => logger.warn({ err: error }, 'revoking a grant that was not stored failed'));
    },

    /**
     * The hourly job: disconnected mailboxes whose revocation Google did not answer are asked again;
     * once revoked (or past asking) the token is wiped and that is audited. Returns how many were settled.
     */
    async retryRevocations(limit = 100): Promise<number> {
      let settled = 0;
      for (const mailbox of await repo.listRevocationsPending(limit)) if (await settleRevocation(mailbox)) settled += 1;
      return settled;
    },
  };
}
