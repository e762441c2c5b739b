import { createHash, randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { isUniqueViolation } from '../db/pg-errors.js';
import type { Role } from '../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.js';
import type { AuthRepo, InvitationRow, UserRow, WorkspaceRow } from './auth.repo.js';
import { DECOY_PASSWORD_HASH, hashPassword, verifyPassword } from './passwords.js';
import type { SessionTokens } from './sessions.js';

export interface AuthContext {
  userId: string;
  workspaceId: string;
  role: Role;
}

const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;
const ROLE_RANK: Record<Role, number> = { member: 0, admin: 1, owner: 2 };

/** Login addresses are matched case-insensitively. */
export const normalizeLoginEmail = (email: string) => email.trim().toLowerCase();
const hashInvitationToken = (token: string) => createHash('sha256').update(token).digest('hex');


export function presentUser(user: UserRow) {
  return { id: user.id, email: user.email, name: user.name, createdAt: user.createdAt };
}

export function presentWorkspace(workspace: WorkspaceRow) {
  return { id: workspace.id, name: workspace.name, postalAddress: workspace.postalAddress, createdAt: workspace.createdAt };
}

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

export function createAuthService(deps: { repo: AuthRepo; sessions: SessionTokens; config: Pick<Config, 'policyVersion'>; now?: () => Date }) {
  const { repo, sessions } = deps;
  const now = deps.now ?? (() => new Date());

  const issueSession = (userId: string, workspaceId: string) => sessions.sign({ userId, workspaceId });

  return {
    async signup(input: { email: string; password: string; workspaceName: string; name?: string }) {
      const email = normalizeLoginEmail(input.email);
      const passwordHash = await hashPassword(input.password);
      try {
        const { user, workspace } = await repo.transaction(async (tx) => {
          if (await tx.findUserByEmail(email)) throw new ConflictError('email_taken', 'An account with this email already exists');
          const user = await tx.insertUser({ email, name: input.name ?? null, passwordHash });
          const workspace = await tx.insertWorkspace(input.workspaceName);
          await tx.insertMembership(workspace.id, user.id, 'owner');
          return { user, workspace };
        });
        return { token: issueSession(user.id, workspace.id), user: presentUser(user), workspace: presentWorkspace(workspace), role: 'owner' as const };
      } catch (error) {
        // Two signups racing for one address: the unique index decides, the loser gets the same 409.
        if (isUniqueViolation(error)) throw new ConflictError('email_taken', 'An account with this email already exists');
        throw error;
      }
    },

    /** Any mismatch is the same 401, so a caller cannot learn which part was wrong. */
    async login(input: { email: string; password: string; workspaceId?: string }) {
      const user = await repo.findUserByEmail(normalizeLoginEmail(input.email));
      const passwordOk = await verifyPassword(input.password, user?.passwordHash ?? DECOY_PASSWORD_HASH);
      if (!user || !passwordOk) throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
      const membership = input.workspaceId
        ? await repo.findMembership(input.workspaceId, user.id).then((m) => (m ? { workspaceId: input.workspaceId! } : undefined))
        : await repo.findFirstMembership(user.id);
      if (!membership) throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
      return { token: issueSession(user.id, membership.workspaceId) };
    },

    /** Resolves a bearer token to who is calling, checking the membership on every request (P-17). */
    async authenticate(bearerToken: string): Promise<AuthContext> {
      const claims = sessions.verify(bearerToken);
      const membership = await repo.findMembership(claims.workspaceId, claims.userId);
      if (!membership) throw new UnauthorizedError('invalid_token', 'The bearer token is not valid');
      return { userId: claims.userId, workspaceId: claims.workspaceId, role: membership.role };
    },

    async me(auth: AuthContext) {
      const [user, membership] = await Promise.all([repo.findUserById(auth.userId), repo.findMembership(auth.workspaceId, auth.userId)]);
      if (!user || !membership) throw new UnauthorizedError();
      return { user: presentUser(user), workspace: presentWorkspace(membership.workspace), role: membership.role };
    },

    /** Owners and admins name the workspace and set the postal address marketing mail carries. */
    async updateWorkspace(auth: AuthContext, patch: { name?: string; postalAddress?: string | null }) {
      if (auth.role === 'member') throw new ForbiddenError('Only owners and admins change the workspace');
      return presentWorkspace((await repo.updateWorkspace(auth.workspaceId, patch))!);
    },

    async listMembers(auth: AuthContext) {
      return repo.listMembers(auth.workspaceId);
    },

    /** Admins invite; nobody can hand out a role above their own. The token is shown once. */
    async invite(auth: AuthContext, input: { email: string; role: Role }) {
      if (ROLE_RANK[input.role] > ROLE_RANK[auth.role]) throw new ForbiddenError('You cannot invite someone to a role above your own');
      const token = randomBytes(32).toString('base64url');
      const invitation = await repo.insertInvitation({
        workspaceId: auth.workspaceId,
        email: normalizeLoginEmail(input.email),
        role: input.role,
        tokenHash: hashInvitationToken(token),
        invitedBy: auth.userId,
        expiresAt: new Date(now().getTime() + INVITATION_TTL_MS),
      });
      return { invitation: presentInvitation(invitation), token };
    },

    async listInvitations(auth: AuthContext) {
      return (await repo.listPendingInvitations(auth.workspaceId, now())).map(presentInvitation);
    },

    async revokeInvitation(auth: AuthContext, invitationId: string) {
      if (!(await repo.deleteInvitation(auth.workspaceId, invitationId))) throw new NotFoundError('Invitation');
    },

    /**
     * Accepting joins the invited address to the workspace. An existing account proves
     * itself with its password; a new one is created with the password given.
     */
    async acceptInvitation(input: { token: string; password: string; name?: string }) {
      const passwordHashForNewUser = await hashPassword(input.password);
      const result = await repo.transaction(async (tx) => {
        const invitation = await tx.lockUsableInvitation(hashInvitationToken(input.token), now());
        if (!invitation) throw new NotFoundError('Invitation', 'invitation_not_found');
        let user = await tx.findUserByEmail(invitation.email);
        if (user) {
          if (!(await verifyPassword(input.password, user.passwordHash))) {
            throw new UnauthorizedError('invalid_credentials', 'Email or password is incorrect');
          }
        } else {
          user = await tx.insertUser({ email: invitation.email, name: input.name ?? null, passwordHash: passwordHashForNewUser });
        }
        await tx.insertMembership(invitation.workspaceId, user.id, invitation.role);
        await tx.markInvitationAccepted(invitation.id, now());
        const membership = await tx.findMembership(invitation.workspaceId, user.id);
        return { user, workspace: membership!.workspace, role: membership!.role };
      });
      return {
        token: issueSession(result.user.id, result.workspace.id),
        user: presentUser(result.user),
        workspace: presentWorkspace(result.workspace),
        role: result.role,
      };
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
