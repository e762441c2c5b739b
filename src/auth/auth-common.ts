import { createHash, randomBytes } from 'node:crypto';
import type { Role } from '../db/schema.js';
import type { AuditEntry } from '../privacy/audit.js';
import { actorOf } from './actor.js';
import type { AccountMailer } from './account-mail.js';
import type { AuthRepo, InvitationRow, UserRow, WorkspaceRow } from './auth.repo.js';
import type { AuthContext } from './auth.service.js';
import type { AuthThrottle } from './throttle.js';

/* What signup, invitations and the other account flows (auth.service.ts, invitations.ts) share. */

export const SIGNUP_TTL_MS = 24 * 3600 * 1000;
export const ROLE_RANK: Record<Role, number> = { member: 0, admin: 1, owner: 2 };

/** Login addresses are matched case-insensitively. */
export const normalizeLoginEmail = (email: string) => email.trim().toLowerCase();
/** One-time codes and invitation tokens are stored as their SHA-256 only. */
export const hashOneTimeCode = (token: string) => createHash('sha256').update(token).digest('hex');

export function presentUser(user: UserRow) {
  return { id: user.id, email: user.email, name: user.name, createdAt: user.createdAt };
}

export function presentWorkspace(workspace: WorkspaceRow) {
  return { id: workspace.id, name: workspace.name, postalAddress: workspace.postalAddress, createdAt: workspace.createdAt };
}

/** An audit row for a change the caller made to the workspace's membership. */
export function memberEvent(auth: AuthContext, action: string, subjectType: string, subjectId: string): AuditEntry {
  return { workspaceId: auth.workspaceId, actor: actorOf(auth), action, subjectType, subjectId, requestId: auth.requestId };
}

export type AuthTx = Parameters<Parameters<AuthRepo['transaction']>[0]>[0];

type SignupRequest = Parameters<AuthRepo['insertSignupRequest']>[0];

/**
 * A new account's request waits for its address to be proven: stored (the code's hash only)
 * and the code mailed. A mail that fails leaves nothing behind (the request answers an error).
 * `store` may decline (false: nothing stored, nothing mailed), and so may the address's hourly
 * limit of account mail (throttle.ts `mayMail`); resolves to whether it mailed.
 */
export function createConfirmationMail(repo: AuthRepo, mailer: AccountMailer, throttle: Pick<AuthThrottle, 'mayMail'>, now: () => Date) {
  return async function mailConfirmationCode(
    request: Omit<SignupRequest, 'tokenHash'>,
    mail: { subject: string; purpose: string; ignore: string },
    store: (request: SignupRequest) => Promise<boolean> = async (row) => {
      await repo.insertSignupRequest(row);
      return true;
    },
  ): Promise<boolean> {
    const code = randomBytes(24).toString('base64url');
    const tokenHash = hashOneTimeCode(code);
    await repo.deleteExpiredSignupRequests(now());
    // Past the address's hourly limit: answered as always, nothing stored, nothing mailed.
    const quota = await throttle.mayMail(request.email);
    if (!quota.allowed) return false;
    if (!(await store({ ...request, tokenHash }))) {
      await quota.undo();
      return false;
    }
    try {
      await mailer.send({
        to: request.email,
        subject: mail.subject,
        text: `Your confirmation code is:\n\n${code}\n\nIt works once, for 24 hours: paste it on the confirmation page (/signup/verify) to ${mail.purpose}, or send POST /api/auth/signup/verify {"code": "…"}. ${mail.ignore}`,
      });
    } catch (error) {
      await repo.takeSignupRequest(tokenHash, now());
      await quota.undo();
      throw error;
    }
    return true;
  };
}
export type MailConfirmationCode = ReturnType<typeof createConfirmationMail>;

/** The invited membership, the invitation marked accepted, and its audit entry; `invitation` locked by the caller. */
export async function joinInvitedWorkspace(tx: AuthTx, invitation: InvitationRow, userId: string, at: Date) {
  await tx.insertMembership(invitation.workspaceId, userId, invitation.role);
  await tx.markInvitationAccepted(invitation.id, at);
  await tx.audit({
    workspaceId: invitation.workspaceId,
    actor: `user:${userId}`,
    action: 'member.joined',
    subjectType: 'user',
    subjectId: userId,
    detail: { invitationId: invitation.id, role: invitation.role, invitedBy: invitation.invitedBy },
  });
  const membership = await tx.findMembership(invitation.workspaceId, userId);
  return { workspace: membership!.workspace, role: membership!.role, membership: membership!.stamp };
}
