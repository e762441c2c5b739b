import { ConflictError, UnauthorizedError } from '../errors.js';
import { presentUser, presentWorkspace } from './auth-common.js';
import type { AuthRepo, UserRow } from './auth.repo.js';
import type { LoginDevices } from './login-devices.js';
import type { IssueSession } from './sessions.js';

/*
 * An account that belongs to no workspace any more — removed from its last one (an owner's
 * closure no longer closes a workspace others use) — still has a password, its data and its rights
 * (P-12: to export it, correct it, close the account). Login answers it 403 `no_workspace`; here
 * it signs in by making a workspace of its own, as signup would have. Proven by the password,
 * throttled like a login.
 */
export function createOwnWorkspaces(deps: {
  repo: AuthRepo;
  /** Login's own check of the address and password (auth.service.ts). */
  checkCredentials: (input: { email: string; password: string; deviceToken?: string }, clientAddress: string) => Promise<{ user: UserRow; release: () => Promise<void> }>;
  devices: LoginDevices;
  issueSession: IssueSession;
  now: () => Date;
}) {
  const { repo, checkCredentials, devices, issueSession, now } = deps;
  return {
    async createOwnWorkspace(input: { email: string; password: string; workspaceName: string; deviceToken?: string }, clientAddress: string) {
      const { user, release } = await checkCredentials(input, clientAddress);
      // The password was right: whatever follows, this attempt is not a failure.
      await release();
      const workspace = await repo.transaction(async (tx) => {
        // Two requests at once make one workspace: the second sees the first's membership. An
        // account closed while its password was checked makes none (its purge would leave it behind).
        if (!(await tx.lockLiveUser(user.id))) throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
        if (await tx.findFirstMembership(user.id)) throw new ConflictError('has_workspace', 'This account belongs to a workspace: sign in instead');
        const created = await tx.insertWorkspace(input.workspaceName);
        // A workspace made just now has no member yet: the insert always makes one.
        return { ...created, membership: (await tx.insertMembership(created.id, user.id, 'owner'))! };
      });
      await repo.touchActivity(user.id, now(), { login: true });
      return {
        token: issueSession(user.id, workspace.id, user.sessionVersion, workspace.membership),
        deviceToken: devices.issue(user),
        user: presentUser(user),
        workspace: presentWorkspace(workspace),
        role: 'owner' as const,
      };
    },
  };
}
