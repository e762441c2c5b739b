import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { GmailAccessGrantRow } from '../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError, UnprocessableError } from '../errors.js';
import type { GrantsRepo } from './grants.repo.js';
import { DAY_MS } from '../time.js';

/** A grant is for a task, not forever: at most this long. */
export const MAX_GRANT_DAYS = 90;

export interface GrantsServiceDeps {
  repo: GrantsRepo;
  now?: () => Date;
}

function statusOf(grant: GmailAccessGrantRow, at: Date): 'active' | 'expired' | 'revoked' {
  if (grant.revokedAt) return 'revoked';
  return grant.expiresAt.getTime() > at.getTime() ? 'active' : 'expired';
}

/**
 * Access grants (P-03): the owner of a mailbox lets one named member of the workspace read
 * one message until an expiry, and may revoke that at any time. The guard honours only
 * active grants; every grant and revocation is audited in the transaction that makes it.
 */
export function createGrantsService(deps: GrantsServiceDeps) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());

  const present = (grant: GmailAccessGrantRow, auth: AuthContext) => ({
    id: grant.id,
    messageId: grant.messageId,
    grantedBy: grant.grantedBy,
    granteeUserId: grant.granteeUserId,
    reason: grant.reason,
    expiresAt: grant.expiresAt,
    revokedAt: grant.revokedAt,
    createdAt: grant.createdAt,
    status: statusOf(grant, now()),
    direction: grant.grantedBy === auth.userId ? ('given' as const) : ('received' as const),
  });

  return {
    async grant(auth: AuthContext, input: { messageId: string; granteeUserId: string; expiresAt: Date; reason?: string }) {
      const message = await repo.findMessageWithOwner(auth.workspaceId, input.messageId);
      if (!message) throw new NotFoundError('Message');
      if (message.ownerUserId !== auth.userId) throw new ForbiddenError('Only the owner of the mailbox can grant access to its mail');
      if (input.granteeUserId === auth.userId) throw new UnprocessableError('grant_to_self', 'You already read your own mail');
      const at = now();
      if (input.expiresAt.getTime() <= at.getTime() || input.expiresAt.getTime() > at.getTime() + MAX_GRANT_DAYS * DAY_MS) {
        throw new UnprocessableError('invalid_grant_expiry', `expiresAt must be in the future and at most ${MAX_GRANT_DAYS} days away`);
      }
      const grant = await repo.transaction(async (tx) => {
        // Both still members, under their memberships' locks (auth/member-lock.ts): a removal
        // revokes the grants a member gave or received, and one made while it ran survived it.
        const members = await tx.lockMembers(auth.workspaceId, [auth.userId, input.granteeUserId]);
        if (!members.some((m) => m.userId === auth.userId)) throw new ForbiddenError('You are no longer a member of this workspace');
        if (!members.some((m) => m.userId === input.granteeUserId)) {
          throw new UnprocessableError('grantee_not_member', 'Access can be granted only to a member of this workspace');
        }
        const row = await tx.insert({
          workspaceId: auth.workspaceId,
          messageId: message.messageId,
          grantedBy: auth.userId,
          granteeUserId: input.granteeUserId,
          reason: input.reason ?? null,
          expiresAt: input.expiresAt,
          createdAt: at,
        });
        await tx.audit({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          action: 'grant.created',
          subjectType: 'gmail_access_grant',
          subjectId: row.id,
          detail: { messageId: row.messageId, mailboxId: message.mailboxId, granteeUserId: row.granteeUserId, expiresAt: row.expiresAt.toISOString() },
          requestId: auth.requestId,
        });
        return row;
      });
      return present(grant, auth);
    },

    /** The grants the caller gave (as a mailbox owner) or received (as a grantee). */
    async list(auth: AuthContext, limit: number) {
      return (await repo.listForUser(auth.workspaceId, auth.userId, limit)).map((g) => present(g, auth));
    },

    /**
     * One message's grants as its reader sees them (the message page): whether the caller owns
     * its mailbox (and so may grant), and the grants on it the caller gave or received.
     */
    async forMessage(auth: AuthContext, messageId: string) {
      const message = await repo.findMessageWithOwner(auth.workspaceId, messageId);
      if (!message) return { owner: false, grants: [] };
      const rows = await repo.listForMessage(auth.workspaceId, message.messageId, auth.userId);
      return { owner: message.ownerUserId === auth.userId, grants: rows.map((g) => present(g, auth)) };
    },

    async revoke(auth: AuthContext, grantId: string) {
      const grant = await repo.findById(auth.workspaceId, grantId);
      if (!grant || (grant.grantedBy !== auth.userId && grant.granteeUserId !== auth.userId)) throw new NotFoundError('Grant');
      if (grant.grantedBy !== auth.userId) throw new ForbiddenError('Only the mailbox owner who granted access can revoke it');
      await repo.transaction(async (tx) => {
        const revoked = await tx.revoke(auth.workspaceId, grantId, auth.userId, now());
        if (!revoked) throw new ConflictError('grant_already_revoked', 'This grant was revoked already');
        await tx.audit({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          action: 'grant.revoked',
          subjectType: 'gmail_access_grant',
          subjectId: grantId,
          detail: { messageId: grant.messageId, granteeUserId: grant.granteeUserId },
          requestId: auth.requestId,
        });
      });
    },
  };
}

export type GrantsService = ReturnType<typeof createGrantsService>;
