import { randomBytes } from 'node:crypto';
import type { Role } from '../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError, TooManyRequestsError, UnauthorizedError } from '../errors.js';
import { hashOneTimeCode, joinInvitedWorkspace, memberEvent, normalizeLoginEmail, presentUser, presentWorkspace, ROLE_RANK, SIGNUP_TTL_MS, type MailConfirmationCode } from './auth-common.js';
import type { AccountMailer } from './account-mail.js';
import type { AuthRepo, InvitationRow, UserRow } from './auth.repo.js';
import type { AuthContext } from './auth.service.js';
import { DECOY_PASSWORD_HASH, verifyPassword } from './passwords.js';
import type { LoginDevices } from './login-devices.js';
import type { IssueSession } from './sessions.js';
import type { AuthThrottle } from './throttle.js';

/*
 * Invitations (README.md "Invitations"): an owner or admin invites an address with a role; the
 * token is shown once to the inviter, who hands it on. Accepting joins the workspace: an
 * existing account by its password, a new address by the code mailed to it (verifySignup in
 * auth.service.ts creates the account, with the password chosen there, and the membership).
 */

const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;
/** Accepting an invitation for a new address mails its code at most this often. */
const INVITATION_MAIL_INTERVAL_MS = 10 * 60 * 1000;
/**
 * Invitations one workspace makes in 24 hours. Each can make us mail a code to any address
 * (accepting it for a new address): per address that is limited already, across addresses this
 * is what stops a workspace from using our mail to reach a list of strangers.
 */
export const INVITATIONS_PER_DAY = 100;
const DAY_MS = 24 * 3600 * 1000;

/**
 * A workspace's name as account mail shows it: its owner's text, so only in the body (a subject
 * is what a mail program shows as the sender's own words), quoted and cut short.
 */
export function quotedWorkspaceName(name: string | undefined): string {
  if (!name) return '(unknown)';
  const shown = name.length > 60 ? `${name.slice(0, 59)}…` : name;
  return `“${shown}”`;
}

const alreadyMember = () => new ConflictError('already_member', 'This address is already a member of the workspace; change their role on the members list instead');

function presentInvitation(invitation: InvitationRow) {
  return {
    id: invitation.id,
    email: invitation.email,
    role: invitation.role,
    expiresAt: invitation.expiresAt,
    acceptedAt: invitation.acceptedAt,
    createdAt: invitation.createdAt,
  };
}

export function createInvitations(deps: {
  repo: AuthRepo;
  throttle: AuthThrottle;
  devices: LoginDevices;
  mailer: AccountMailer;
  mailConfirmationCode: MailConfirmationCode;
  issueSession: IssueSession;
  now: () => Date;
}) {
  const { repo, throttle, devices, mailer, mailConfirmationCode, issueSession, now } = deps;
  /**
   * An existing account's next step when its password was not given: the invitation code and
   * where to use it with the password. Nothing in it joins by itself (the mailbox alone is no
   * proof of the account); limited per recipient like every account mail, and a mail that
   * fails gives its count back.
   */
  async function mailJoinNote(to: string, named: string, token: string) {
    const quota = await throttle.mayMail(to);
    if (!quota.allowed) return;
    try {
      await mailer.send({
        to,
        subject: 'An invitation to join a workspace on inboxtrail',
        text: `You were invited to join the workspace named ${named} on inboxtrail. This address already has an inboxtrail account: to join with it, open the invitation page (/invitations/accept), paste the invitation code below and give your account's password (or send POST /api/invitations/accept {"token": "…", "password": "…"}).\n\nInvitation code:\n\n${token}\n\nIf you were not expecting an invitation, ignore this mail: nothing changes without your password.`,
      });
    } catch (error) {
      await quota.undo();
      throw error;
    }
  }

  /** The existing account, its password just proven, joins: a session in the workspace. */
  async function joinWithAccount(invitation: InvitationRow, existing: UserRow) {
    const result = await repo.transaction(async (tx) => {
      const locked = await tx.findUsableInvitation({ id: invitation.id }, now(), true);
      if (!locked) throw new NotFoundError('Invitation', 'invitation_not_found');
      // The account checked above, unchanged since (not closed, no new password meanwhile).
      const user = await tx.findUserByEmail(locked.email);
      if (!user || user.id !== existing.id || user.passwordHash !== existing.passwordHash) {
        throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
      }
      // Joined meanwhile (another invitation): this one would be used up and change nothing.
      if (await tx.findMembership(locked.workspaceId, user.id)) throw alreadyMember();
      return { user, ...(await joinInvitedWorkspace(tx, locked, user.id, now())) };
    });
    return {
      token: issueSession(result.user.id, result.workspace.id, result.user.sessionVersion, result.membership),
      user: presentUser(result.user),
      workspace: presentWorkspace(result.workspace),
      role: result.role,
    };
  }

  return {
    /** Admins invite; nobody can hand out a role above their own. The token is shown once. */
    async invite(auth: AuthContext, input: { email: string; role: Role }) {
      if (ROLE_RANK[input.role] > ROLE_RANK[auth.role]) throw new ForbiddenError('You cannot invite someone to a role above your own');
      // A member already: accepting would change nothing (their role stays), so say so now.
      const invitee = await repo.findUserByEmail(normalizeLoginEmail(input.email));
      if (invitee && (await repo.findMembership(auth.workspaceId, invitee.id))) throw alreadyMember();
      const token = randomBytes(32).toString('base64url');
      const invitation = await repo.transaction(async (tx) => {
        const at = now();
        const made = await tx.lockInvitationsSince(auth.workspaceId, new Date(at.getTime() - DAY_MS));
        if (made.count >= INVITATIONS_PER_DAY) {
          // Until the oldest of the day's invitations leaves the window (a whole second at least).
          const freeIn = made.oldest ? Math.max(1, Math.ceil((made.oldest.getTime() + DAY_MS - at.getTime()) / 1000)) : 3600;
          throw new TooManyRequestsError(`A workspace makes at most ${INVITATIONS_PER_DAY} invitations a day; try again later`, freeIn);
        }
        const row = await tx.insertInvitation({
          workspaceId: auth.workspaceId,
          email: normalizeLoginEmail(input.email),
          role: input.role,
          tokenHash: hashOneTimeCode(token),
          invitedBy: auth.userId,
          expiresAt: new Date(now().getTime() + INVITATION_TTL_MS),
        });
        await tx.audit({ ...memberEvent(auth, 'member.invited', 'invitation', row.id), detail: { role: row.role } });
        return row;
      });
      return { invitation: presentInvitation(invitation), token };
    },

    async listInvitations(auth: AuthContext) {
      return (await repo.listPendingInvitations(auth.workspaceId, now())).map(presentInvitation);
    },

    async revokeInvitation(auth: AuthContext, invitationId: string) {
      await repo.transaction(async (tx) => {
        if (!(await tx.deleteInvitation(auth.workspaceId, invitationId))) throw new NotFoundError('Invitation');
        await tx.audit(memberEvent(auth, 'invitation.revoked', 'invitation', invitationId));
      });
    },

    /**
     * Accepting joins the invited address to the workspace. An existing account proves itself
     * with its password, throttled like a login (the token's holder could be anyone the inviter
     * gave it to) → 201 with a session. A new address must prove itself first: its token went to
     * the inviter, so anyone holding it could otherwise make an account in another person's name.
     * A pending request waits, and the code mailed to the address, with the password and name
     * chosen there, creates the account and the membership (`verifySignup`).
     *
     * Whoever invites an address holds its token, so the answer must not tell them whether the
     * address has an account: without the account's password — none given, or a wrong one, or an
     * address with no account — the answer is the same 202 `verification_sent`, and the address is
     * mailed its next step (a code for a new address, a note saying how to join with the account
     * for an existing one), both limited per recipient (throttle.ts mayMail). A password given is
     * a login attempt on the address whether it has an account or not (a decoy hash otherwise), so
     * the limit's 429 comes at the same point for both; an accept without one is no attempt, so
     * probing cannot lock the account.
     */
    async acceptInvitation(input: { token: string; password?: string; name?: string; deviceToken?: string }, clientAddress: string) {
      const invitation = await repo.findUsableInvitation({ tokenHash: hashOneTimeCode(input.token) }, now());
      if (!invitation) throw new NotFoundError('Invitation', 'invitation_not_found');
      const existing = await repo.findUserByEmail(invitation.email);
      // The web form sends an empty password for "I have no account".
      if (input.password) {
        // A known device of the account (login-devices.ts) is counted per device, as at sign-in.
        const release = await throttle.admitLogin(invitation.email, clientAddress, devices.deviceOf(input.deviceToken, existing));
        if (existing && (await verifyPassword(input.password, existing.passwordHash))) {
          // The password was right: whatever follows (already_member, say), this attempt is not a failure.
          await release();
          return joinWithAccount(invitation, existing);
        }
        // Takes as long as checking an account's password.
        if (!existing) await verifyPassword(input.password, DECOY_PASSWORD_HASH);
      }
      await throttle.admitSignup(clientAddress);
      const workspace = await repo.findWorkspace(invitation.workspaceId);
      const named = quotedWorkspaceName(workspace?.name);
      if (existing) {
        await mailJoinNote(invitation.email, named, input.token);
      } else {
        // One mail per invitation per INVITATION_MAIL_INTERVAL_MS, also when accepts arrive
        // together (anyone holding the token): neither a flood nor a voided code.
        const mailedAfter = new Date(now().getTime() - INVITATION_MAIL_INTERVAL_MS);
        await mailConfirmationCode(
          {
            email: invitation.email,
            // The name and the password are chosen with the code (verifySignup), by the address's owner.
            name: null,
            invitationId: invitation.id,
            // An empty hash matches no password.
            passwordHash: '',
            expiresAt: new Date(Math.min(now().getTime() + SIGNUP_TTL_MS, invitation.expiresAt.getTime())),
          },
          {
            // The workspace's name is the inviter's text: never in the subject, only quoted in the body.
            subject: 'Confirm your address to join a workspace on inboxtrail',
            purpose: `join the workspace named ${named} you were invited to, with the password you choose there`,
            ignore: 'If you were not expecting an invitation, ignore this mail: no account is made without this code.',
          },
          (request) => repo.replaceSignupRequestOfInvitation({ ...request, invitationId: invitation.id }, mailedAfter),
        );
      }
      return { status: 'verification_sent' as const, message: 'Check your inbox: we sent a mail to the invited address with the next step.' };
    },
  };
}
