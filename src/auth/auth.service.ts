import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import { isUniqueViolation } from '../db/pg-errors.js';
import type { Role } from '../db/schema.js';
import { AppError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError, ValidationError } from '../errors.js';
import {
  createConfirmationMail,
  hashOneTimeCode,
  joinInvitedWorkspace,
  memberEvent,
  normalizeLoginEmail,
  presentUser,
  presentWorkspace,
  ROLE_RANK,
  SIGNUP_TTL_MS,
  type AuthTx,
} from './auth-common.js';
import { createInvitations } from './invitations.js';
import { createOwnWorkspaces } from './own-workspace.js';
import { createProfileCorrection } from './profile.js';
import type { AuthRepo } from './auth.repo.js';
import { DECOY_PASSWORD_HASH, hashPassword, verifyPassword } from './passwords.js';
import { sessionEnded, type IssueSession, type SessionTokens } from './sessions.js';
import type { AccountMailer } from './account-mail.js';
import type { AuthThrottle } from './throttle.js';
import type { LoginDevices } from './login-devices.js';
import { actorOf } from './actor.js';
import type { Db } from '../db/connect.js';
import type { MailboxRow } from '../gmail/mailboxes.repo.js';
import type { ApiScope } from '../http/api-spec.js';

export interface AuthContext {
  userId: string;
  workspaceId: string;
  role: Role;
  /** The request being served (X-Request-Id), so audit rows can point at its log line. */
  requestId?: string;
  /** Set when the caller is an API key (acting for `userId`, the member who created it). */
  apiKeyId?: string;
  /** That key's scopes; requireAuth has checked them against the route. */
  scopes?: ApiScope[];
  /**
   * The person's session this request came with (a bearer session token or a web session) and
   * the users.session_version it was started at. A password change ends every session of the
   * user and gives this caller a new one (profile.ts); a web session started from a token
   * carries the token's version (web-sessions.service.ts).
   */
  session?: {
    kind: 'token' | 'web';
    version: number;
    /**
     * This one session among the person's, and no secret: the SHA-256 of the bearer token, or
     * `web:` and the web session's id. Password re-checks are counted per session
     * (throttle.ts admitPasswordRecheck), so a stolen session's guesses never use up its
     * owner's re-checks in another session.
     */
    key: string;
    /**
     * The membership's stamp (auth.repo.ts `membershipStamp`) the session was checked against:
     * a token issued for this session (a password change's successor) names it, and work that
     * outlasts the request (`recheck`) stops when the person was removed and invited back.
     */
    membership: string;
  };
}

export function createAuthService(deps: {
  repo: AuthRepo;
  sessions: SessionTokens;
  throttle: AuthThrottle;
  /** Known devices: their logins are throttled per device, not per account (login-devices.ts). */
  devices: LoginDevices;
  mailer: AccountMailer;
  config: Pick<Config, 'policyVersion' | 'jwt'>;
  now?: () => Date;
  /** P-18: the policy version in force and the one the caller accepted (privacy/policy-versions.ts). */
  policyOf?: (auth: AuthContext) => Promise<unknown>;
  /**
   * What leaving a workspace does to the mailboxes the member connected there (gmail/mailboxes.service.ts):
   * removed inside the leave's transaction (`within`, given it), then revoked at Google after the commit.
   */
  memberMailboxes: {
    removeWithin: (db: Db, owner: { workspaceId: string; userId: string }, actor: string, requestId?: string) => Promise<MailboxRow[]>;
    revokeRemoved: (mailboxes: MailboxRow[]) => Promise<void>;
  };
}) {
  const { repo, sessions, throttle, devices, mailer } = deps;
  const now = deps.now ?? (() => new Date());

  /**
   * `sessionVersion`: users.session_version as read with the password hash (or user row) the
   * session is granted on, so a login that checked the old password signs a token that a password
   * change committed meanwhile has already ended, whenever it is signed. `membership`: the stamp
   * of the membership it is granted in, read or written with it (a removal ends the session).
   */
  const issueSession: IssueSession = (userId, workspaceId, sessionVersion, membership) => sessions.sign({ userId, workspaceId, sessionVersion, membership });
  const mailConfirmationCode = createConfirmationMail(repo, mailer, throttle, now);

  /**
   * A login's proof, for login and for an account making a workspace of its own: the account of
   * this address and its password, throttled (throttle.ts; a known device counted per device).
   * Unknown accounts are checked against a decoy hash: both failures take as long. Resolves to
   * the user and the release that takes this attempt off the count.
   */
  async function checkCredentials(input: { email: string; password: string; deviceToken?: string }, clientAddress: string) {
    const email = normalizeLoginEmail(input.email);
    const user = await repo.findUserByEmail(email);
    const release = await throttle.admitLogin(email, clientAddress, devices.deviceOf(input.deviceToken, user));
    const passwordOk = await verifyPassword(input.password, user?.passwordHash ?? DECOY_PASSWORD_HASH);
    if (!user || !passwordOk) throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
    return { user, release };
  }

  /**
   * Runs a change to one membership under the workspace's membership lock, after the checks
   * every such change shares: the target exists, is not ranked above the caller, and — when
   * the change takes an owner away (`takesOwner`) — is not the last owner.
   */
  async function changeMembership(
    auth: AuthContext,
    userId: string,
    takesOwner: boolean,
    change: (tx: AuthTx, target: { userId: string; role: Role }) => Promise<void>,
  ) {
    await repo.transaction(async (tx) => {
      const target = checkedTarget(auth, userId, takesOwner, await tx.lockMemberships(auth.workspaceId));
      await change(tx, target);
    });
  }

  function checkedTarget(auth: AuthContext, userId: string, takesOwner: boolean, members: { userId: string; role: Role; live: boolean }[]) {
    const target = members.find((m) => m.userId === userId);
    if (!target) throw new NotFoundError('Member');
    if (ROLE_RANK[target.role] > ROLE_RANK[auth.role]) throw new ForbiddenError('You cannot change a member ranked above you');
    // Owners whose accounts are closed own nothing any more: they do not count.
    if (takesOwner && target.role === 'owner' && target.live && members.filter((m) => m.role === 'owner' && m.live).length === 1) {
      throw new ConflictError('last_owner', 'A workspace keeps at least one owner: make someone else owner first');
    }
    return target;
  }

  /**
   * A membership's removal: the row, its audit row, the API keys the member made there and the
   * Gmail access grants they received or gave there (revoked, audited): invited back, they bring
   * none of them back. The webhook endpoints they vouch for are turned off (audited): they send the
   * workspace's data where this member said, and would go on doing so for someone no longer here.
   */
  async function removeMembership(tx: AuthTx, auth: AuthContext, target: { userId: string; role: Role }) {
    await tx.deleteMembership(auth.workspaceId, target.userId);
    await tx.audit({ ...memberEvent(auth, 'member.removed', 'user', target.userId), detail: { role: target.role } });
    for (const keyId of await tx.revokeApiKeysOf(auth.workspaceId, target.userId, now())) {
      await tx.audit({ ...memberEvent(auth, 'api_key.revoked', 'api_key', keyId), detail: { reason: 'member_removed' } });
    }
    for (const grant of await tx.revokeGrantsOf(auth.workspaceId, target.userId, now())) {
      await tx.audit({
        ...memberEvent(auth, 'grant.revoked', 'gmail_access_grant', grant.id),
        detail: { messageId: grant.messageId, granteeUserId: grant.granteeUserId, reason: 'member_removed' },
      });
    }
    for (const endpointId of await tx.disableWebhooksOf(auth.workspaceId, target.userId, now())) {
      await tx.audit({ ...memberEvent(auth, 'webhook.endpoint_disabled', 'webhook_endpoint', endpointId), detail: { reason: 'member_removed', userId: target.userId } });
    }
  }

  /**
   * The caller leaves the workspace, whatever their role; its last owner cannot (409
   * `last_owner`). The mailboxes they connected there are disconnected (revoked at Google
   * unless connected elsewhere too): their Gmail was connected for their work here. One
   * transaction removes the mailboxes and, under the membership lock, checks and removes the
   * membership, so a refused leave (two owners leaving at once) touches no mailbox, and a
   * connection finishing after the lock finds no membership (the callback re-checks it under
   * that lock). Google is asked after the commit; if that never happens (a crash), the kept
   * token is revoked by the hourly job.
   */
  async function leaveWorkspace(auth: AuthContext) {
    const owner = { workspaceId: auth.workspaceId, userId: auth.userId };
    const removeMailboxes = (tx: AuthTx) => deps.memberMailboxes.removeWithin(tx.unitOfWork, owner, actorOf(auth), auth.requestId);
    let removed: MailboxRow[] = [];
    await repo.transaction(async (tx) => {
      // The mailboxes' rows before the workspace's: the order sync, recovery and the send claim
      // take them in (a mailbox row, then the workspace's key share for what they insert). The
      // other way round, the membership lock's `for update` of the workspace deadlocked with a
      // sync insert (a reviewer's repro). A refused leave rolls these back.
      removed = await removeMailboxes(tx);
      const target = checkedTarget(auth, auth.userId, true, await tx.lockMemberships(auth.workspaceId));
      await removeMembership(tx, auth, target);
      // One connected in between committed before the workspace lock; none can commit after it.
      removed.push(...(await removeMailboxes(tx)));
    });
    await deps.memberMailboxes.revokeRemoved(removed);
  }

  return {
    // P-12 correction of one's own profile (profile.ts): updateProfile, confirmEmail.
    ...createProfileCorrection({ repo, throttle, mailer, config: deps.config, present: presentUser, issueSession, now }),
    // Invitations (invitations.ts): invite, listInvitations, revokeInvitation, acceptInvitation.
    ...createInvitations({ repo, throttle, devices, mailer, mailConfirmationCode, issueSession, now }),
    // An account in no workspace makes one of its own (own-workspace.ts): createOwnWorkspace.
    ...createOwnWorkspaces({ repo, checkCredentials, devices, issueSession, now }),

    /**
     * Signup never says whether an address already has an account (issue 9): every valid
     * request gets the same 202 and one mail. A new address gets a confirmation code, and
     * nothing but the pending request exists until the code comes back (`verifySignup`);
     * a known address gets a note to its owner instead. Both paths hash the password, so
     * they also take as long.
     */
    async signup(input: { email: string; password: string; workspaceName: string; name?: string }, clientAddress: string) {
      await throttle.admitSignup(clientAddress);
      const email = normalizeLoginEmail(input.email);
      const passwordHash = await hashPassword(input.password);
      if (await repo.findUserByEmail(email)) {
        // The owner's note counts against the address's hourly limit too (throttle.ts mayMail).
        if ((await throttle.mayMail(email)).allowed) await mailer.send({
          to: email,
          subject: 'Someone tried to create an inboxtrail account with your address',
          text: 'An inboxtrail account already uses this address, so no new account was created.\n\nIf it was you, log in with your password instead. If it was not you, you can ignore this mail: nothing changed.',
        });
      } else {
        await mailConfirmationCode(
          { email, name: input.name ?? null, workspaceName: input.workspaceName, passwordHash, expiresAt: new Date(now().getTime() + SIGNUP_TTL_MS) },
          { subject: 'Confirm your inboxtrail account', purpose: 'finish creating your account', ignore: 'If you did not sign up, ignore this mail.' },
        );
      }
      return { status: 'verification_sent' as const, message: 'Check your inbox: we sent a mail to that address with the next step.' };
    },

    /**
     * The code from the confirmation mail creates the user and: for a signup, its workspace and
     * the owner membership; for an invitation accepted by a new address, the invited membership.
     */
    async verifySignup(input: { code: string; password?: string; name?: string }) {
      // Hashed before the transaction (scrypt is slow); used only when the code is an invitation's.
      const chosenPasswordHash = input.password === undefined ? undefined : await hashPassword(input.password);
      try {
        const { user, workspace, role, membership } = await repo.transaction(async (tx) => {
          const request = await tx.takeSignupRequest(hashOneTimeCode(input.code), now());
          if (!request) throw new NotFoundError('Signup code', 'signup_code_invalid');
          const invitation = request.invitationId ? await tx.findUsableInvitation({ id: request.invitationId }, now(), true) : undefined;
          if (request.invitationId && !invitation) throw new NotFoundError('Invitation', 'invitation_not_found');
          // Joining by invitation, the password is chosen by whoever holds the code mailed to the
          // address, never by whoever accepted the invitation (its token went to the inviter).
          if (invitation && !chosenPasswordHash) throw new ValidationError([{ field: 'password', message: 'choose the password of your new account with the code' }]);
          // Someone else confirmed this address first (two pending requests): the account exists now.
          if (await tx.findUserByEmail(request.email)) throw new ConflictError('email_taken', 'An account with this email already exists; log in instead');
          const passwordHash = invitation ? chosenPasswordHash! : request.passwordHash;
          const user = await tx.insertUser({ email: request.email, name: invitation ? (input.name ?? null) : request.name, passwordHash });
          if (invitation) return { user, ...(await joinInvitedWorkspace(tx, invitation, user.id, now())) };
          const workspace = await tx.insertWorkspace(request.workspaceName ?? 'My workspace');
          // A workspace made just now has no member yet: the insert always makes one.
          const membership = (await tx.insertMembership(workspace.id, user.id, 'owner'))!;
          return { user, workspace, role: 'owner' as const, membership };
        });
        return { token: issueSession(user.id, workspace.id, user.sessionVersion, membership), user: presentUser(user), workspace: presentWorkspace(workspace), role };
      } catch (error) {
        // Two confirmations racing for one address: the unique index decides, the loser gets the same 409.
        if (isUniqueViolation(error)) throw new ConflictError('email_taken', 'An account with this email already exists; log in instead');
        throw error;
      }
    },

    /**
     * Any mismatch is the same 401, so a caller cannot learn which part was wrong. Attempts
     * are throttled per account and per client address (throttle.ts) before any check.
     */
    async login(input: { email: string; password: string; workspaceId?: string; deviceToken?: string }, clientAddress: string) {
      const { user, release } = await checkCredentials(input, clientAddress);
      const membership = input.workspaceId
        ? await repo.findMembership(input.workspaceId, user.id).then((m) => (m ? { workspaceId: input.workspaceId!, stamp: m.stamp } : undefined))
        : await repo.findFirstMembership(user.id);
      if (!membership) {
        if (input.workspaceId) throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
        // The right password of an account in no workspace (removed from its last one): not a
        // failed attempt, and not a dead end — it may make a workspace of its own (own-workspace.ts).
        await release();
        throw new AppError('no_workspace', 403, 'Your account is not a member of any workspace any more. Ask to be invited again, or create a workspace of your own.');
      }
      await release();
      await repo.touchActivity(user.id, now(), { login: true });
      // A fresh device token each time: it renews the device's standing (LOGIN_DEVICE_TTL_SECONDS).
      return { token: issueSession(user.id, membership.workspaceId, user.sessionVersion, membership.stamp), deviceToken: devices.issue(user) };
    },

    /** Resolves a bearer token to who is calling, checking the membership on every request (P-17). */
    async authenticate(bearerToken: string): Promise<AuthContext> {
      const claims = sessions.verify(bearerToken);
      const membership = await repo.findMembership(claims.workspaceId, claims.userId);
      if (!membership) throw new UnauthorizedError('invalid_token', 'The bearer token is not valid');
      // Ended by a password change since it was issued (the user's version moved on), by the
      // account's closure (JWT `iat` has whole seconds: a session issued in the second of a
      // closure counts as before it), or with the membership it was issued for (removed, the
      // person invited back since: another membership). A token from before tokens named their
      // membership is taken for the current one until it expires.
      if (
        claims.sessionVersion !== membership.sessionVersion ||
        sessionEnded(claims, membership.sessionsNotBefore) ||
        (claims.membership !== undefined && claims.membership !== membership.stamp)
      ) {
        throw new UnauthorizedError('invalid_token', 'The bearer token is not valid');
      }
      await repo.touchActivity(claims.userId, now());
      const key = createHash('sha256').update(bearerToken).digest('hex');
      return { userId: claims.userId, workspaceId: claims.workspaceId, role: membership.role, session: { kind: 'token', version: claims.sessionVersion, key, membership: membership.stamp } };
    },

    /**
     * A person's request whose work outlasts its first moment (a CSV import's batches) asks again
     * before each step: removed from the workspace, or every session ended (a new password, the
     * account closed) since, it stops there, as `authenticate` would refuse the next request.
     */
    async recheck(auth: AuthContext): Promise<void> {
      const membership = await repo.findMembership(auth.workspaceId, auth.userId);
      if (!membership || (auth.session && (auth.session.version !== membership.sessionVersion || auth.session.membership !== membership.stamp))) {
        throw new UnauthorizedError('invalid_token', 'The session has ended');
      }
    },

    /**
     * Who a signed-in browser is (a web session names a user, a workspace and the session version
     * it started at): the membership and the version are re-read every time, like `authenticate`.
     */
    async memberContext(userId: string, workspaceId: string, sessionVersion: number, sessionKey: string): Promise<AuthContext | undefined> {
      const membership = await repo.findMembership(workspaceId, userId);
      if (!membership || membership.sessionVersion !== sessionVersion) return undefined;
      return { userId, workspaceId, role: membership.role, session: { kind: 'web', version: sessionVersion, key: sessionKey, membership: membership.stamp } };
    },

    /** The workspaces the signed-in person belongs to (the web app's switcher). */
    workspacesOf: (auth: AuthContext) => repo.listWorkspacesOf(auth.userId),

    /** A device token for the person of this session (a browser that signed up or joined by invitation knows the password too). */
    deviceTokenFor(auth: AuthContext): string {
      return devices.issue({ id: auth.userId, sessionVersion: auth.session!.version });
    },

    async me(auth: AuthContext) {
      const [user, membership] = await Promise.all([repo.findUserById(auth.userId), repo.findMembership(auth.workspaceId, auth.userId)]);
      if (!user || !membership) throw new UnauthorizedError();
      const policy = deps.policyOf ? await deps.policyOf(auth) : undefined;
      return { user: presentUser(user), workspace: presentWorkspace(membership.workspace), role: membership.role, ...(policy ? { policy } : {}) };
    },

    /** Owners and admins name the workspace and set the postal address marketing mail carries. */
    async updateWorkspace(auth: AuthContext, patch: { name?: string; postalAddress?: string | null }) {
      if (auth.role === 'member') throw new ForbiddenError('Only owners and admins change the workspace');
      const updated = await repo.updateWorkspace(auth.workspaceId, patch);
      if (!updated) {
        throw new ConflictError('postal_address_in_use', 'Marketing campaigns of this workspace are still sending with its postal address: give another address, or finish or cancel them first');
      }
      return presentWorkspace(updated);
    },

    async listMembers(auth: AuthContext) {
      return repo.listMembers(auth.workspaceId);
    },

    /**
     * Owners and admins change a member's role: never above their own, never of someone
     * ranked above them, never leaving the workspace without an owner. Audited.
     */
    async changeRole(auth: AuthContext, userId: string, role: Role) {
      if (ROLE_RANK[role] > ROLE_RANK[auth.role]) throw new ForbiddenError('You cannot give a role above your own');
      await changeMembership(auth, userId, role !== 'owner', async (tx, target) => {
        if (target.role === role) return;
        await tx.updateRole(auth.workspaceId, userId, role);
        await tx.audit({ ...memberEvent(auth, 'member.role_changed', 'user', userId), detail: { from: target.role, to: role } });
      });
      return { userId, role };
    },

    /**
     * Owners and admins remove a member, never one ranked above them, never the last owner.
     * Audited. Removing oneself is leaving (below: one's mailboxes there go too), which a person
     * does, not an API key acting for them.
     */
    async removeMember(auth: AuthContext, userId: string) {
      if (userId === auth.userId) {
        if (auth.apiKeyId) throw new ForbiddenError('An API key cannot remove the member it acts for: they leave the workspace from their account');
        return leaveWorkspace(auth);
      }
      await changeMembership(auth, userId, true, (tx, target) => removeMembership(tx, auth, target));
    },

    leaveWorkspace,

  };
}

export type AuthService = ReturnType<typeof createAuthService>;
