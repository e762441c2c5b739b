import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { proveCurrentPassword } from '../auth/password-recheck.js';
import type { AuthThrottle } from '../auth/throttle.js';
import { NotFoundError } from '../errors.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { AccountClosureRepo } from './account-closure.repo.js';
import { deletionRequested, purgeDate } from './deletion.js';

/*
 * Account closure (P-12, P-13): `POST /api/privacy/delete-account`, and the inactivity sweep
 * (P-15) that closes accounts nobody used for years. In order:
 *   1. every mailbox the user connected is revoked at Google and its tokens wiped, now;
 *   2. the user is marked closed and `sessions_not_before` set: every session dies at once;
 *   3. each workspace the user is the sole owner of closes with them — its other members
 *      lose access at once, its mailboxes are revoked too (nothing sends from it any more);
 *   4. the purge job removes the user and those workspaces for real at `purgeAfter`.
 * A workspace that has another owner stays; the user's membership goes with the user.
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

  /** Closes the account; `actor` is who the audit rows name, `purgeAfter` when the purge may remove it. */
  async function close(userId: string, actor: string, purgeAfter: Date, requestId?: string): Promise<ClosureResult> {
    const at = now();
    // Google first: a token we can no longer use must not stay valid there.
    await mailboxes.disconnectAllOf({ userId }, actor, requestId);
    const closedWorkspaceIds = await repo.transaction(async (tx) => {
      const memberships = await tx.memberships(userId);
      const closing = await tx.soleOwnedWorkspaces(userId);
      if (!(await tx.closeUser(userId, at, purgeAfter))) throw new NotFoundError('Account');
      for (const { workspaceId } of memberships) {
        await tx.audit(deletionRequested({ workspaceId, actor, requestId }, 'user', userId, purgeAfter));
      }
      for (const workspaceId of closing) {
        await tx.closeWorkspace(workspaceId, at, purgeAfter);
        await tx.audit(deletionRequested({ workspaceId, actor, requestId }, 'workspace', workspaceId, purgeAfter));
      }
      return closing;
    });
    await deps.endWebSessions(userId);
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
      return close(user.id, actorOf(auth), purgeDate(now(), deps.purgeAfterDays), auth.requestId);
    },

    /** P-15: an account inactive past the horizon, warned and still unused, is closed and purged at once. */
    async closeInactiveAccount(userId: string): Promise<ClosureResult> {
      return close(userId, 'system:inactivity', now());
    },
  };
}

export type AccountClosureService = ReturnType<typeof createAccountClosureService>;
