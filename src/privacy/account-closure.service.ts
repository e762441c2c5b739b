import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { proveCurrentPassword } from '../auth/password-recheck.js';
import type { AuthThrottle } from '../auth/throttle.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { AccountClosureRepo } from './account-closure.repo.js';
import { deletionRequested, purgeDate } from './deletion.js';

/*
 * Account closure (P-12, P-13): `POST /api/privacy/delete-account`, and the inactivity sweep
 * (P-15) that closes accounts nobody used for years. In order:
 *   1. every mailbox the user connected is revoked at Google and its tokens wiped, now;
 *   2. the user is marked closed and `sessions_not_before` set: every session dies at once;
 *   3. each workspace the user is the sole owner of, and nobody else uses, closes with them —
 *      its mailboxes are revoked too (nothing sends from it any more);
 *   4. the purge job removes the user and those workspaces for real at `purgeAfter`.
 * A workspace that has another owner stays; the user's membership goes with the user.
 * A workspace the user solely owns that other live members still use is never closed under
 * them (their contacts, campaigns and evidence would go with it): closing one's own account is
 * then refused (409 `workspace_has_members`, naming the workspaces) until another member is
 * made an owner or the others are removed; the inactivity sweep, which cannot ask, makes the
 * successor (the highest role, then the longest a member) the owner, audited.
 */

export interface ClosureResult {
  status: 'closed';
  purgeAfter: Date;
  closedWorkspaceIds: string[];
}

export function createAccountClosureService(deps: {
  repo: AccountClosureRepo;
  mailboxes: Pick<MailboxService, 'disconnectAllOf'>;
  /** The login throttle: the password re-check counts like a login, as PATCH /api/me's does. */
  throttle: AuthThrottle;
  /** Ends the user's browser sessions of the web app (bearer tokens end through sessions_not_before). */
  endWebSessions: (userId: string) => Promise<unknown>;
  purgeAfterDays: number;
  now?: () => Date;
}) {
  const { repo, mailboxes } = deps;
  const now = deps.now ?? (() => new Date());

  /** A closure that would close workspaces other members still use, refused (see above). */
  function refuseClosingUnderOthers(used: { workspaceId: string; name: string }[]): never {
    throw new ConflictError(
      'workspace_has_members',
      `Other people still use ${used.map((w) => w.name).join(', ')}: make one of them an owner, or remove them, before closing your account`,
      { workspaceIds: used.map((w) => w.workspaceId) },
    );
  }

  /**
   * Closes the account; `actor` is who the audit rows name, `purgeAfter` when the purge may
   * remove it. `others`: what happens to a workspace the user solely owns that others still
   * use — `refuse` (the holder's own closure: 409) or `hand over` (the inactivity sweep).
   */
  async function close(userId: string, actor: string, purgeAfter: Date, others: 'refuse' | 'hand over', requestId?: string): Promise<ClosureResult> {
    const at = now();
    if (others === 'refuse') {
      // Asked before Google is told anything; asked again under the workspaces' locks below.
      const used = (await repo.soleOwnedWorkspaces(userId)).filter((w) => w.successorId !== null);
      if (used.length > 0) refuseClosingUnderOthers(used);
    }
    // Google first: a token we can no longer use must not stay valid there.
    await mailboxes.disconnectAllOf({ userId }, actor, requestId);
    const closedWorkspaceIds = await repo.transaction(async (tx) => {
      const memberships = await tx.memberships(userId);
      const soleOwned = await tx.soleOwnedWorkspaces(userId);
      const used = soleOwned.filter((w) => w.successorId !== null);
      if (others === 'refuse' && used.length > 0) refuseClosingUnderOthers(used);
      if (!(await tx.closeUser(userId, at, purgeAfter))) throw new NotFoundError('Account');
      for (const { workspaceId } of memberships) {
        await tx.audit(deletionRequested({ workspaceId, actor, requestId }, 'user', userId, purgeAfter));
      }
      for (const { workspaceId, successorId, successorRole } of used) {
        await tx.makeOwner(workspaceId, successorId!);
        await tx.audit({
          workspaceId,
          actor,
          requestId,
          action: 'member.role_changed',
          subjectType: 'user',
          subjectId: successorId!,
          detail: { from: successorRole, to: 'owner', reason: 'sole_owner_closed' },
        });
      }
      const closing = soleOwned.filter((w) => w.successorId === null).map((w) => w.workspaceId);
      for (const workspaceId of closing) {
        await tx.closeWorkspace(workspaceId, at, purgeAfter);
        await tx.audit(deletionRequested({ workspaceId, actor, requestId }, 'workspace', workspaceId, purgeAfter));
      }
      return closing;
    });
    await deps.endWebSessions(userId);
    // Once more: a Gmail connection the user finished between the first pass and the closure's
    // commit is stored (the callback refuses a closed account only from then on).
    await mailboxes.disconnectAllOf({ userId }, actor, requestId);
    for (const workspaceId of closedWorkspaceIds) await mailboxes.disconnectAllOf({ workspaceId }, actor, requestId);
    return { status: 'closed', purgeAfter, closedWorkspaceIds };
  }

  return {
    /**
     * The caller closes their own account, re-confirming with their password — throttled like a
     * login to that account from `clientAddress`, so a stolen session cannot guess it here.
     */
    async closeOwnAccount(auth: AuthContext, input: { password: string }, clientAddress: string): Promise<ClosureResult> {
      const user = await repo.findLiveUser(auth.userId);
      if (!user) throw new NotFoundError('Account');
      await proveCurrentPassword(deps.throttle, user, input.password, auth, clientAddress);
      return close(user.id, actorOf(auth), purgeDate(now(), deps.purgeAfterDays), 'refuse', auth.requestId);
    },

    /** P-15: an account inactive past the horizon, warned and still unused, is closed and purged at once. */
    async closeInactiveAccount(userId: string): Promise<ClosureResult> {
      return close(userId, 'system:inactivity', now(), 'hand over');
    },
  };
}

export type AccountClosureService = ReturnType<typeof createAccountClosureService>;
