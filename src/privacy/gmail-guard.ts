import { sql, type SQL } from 'drizzle-orm';
import { Counter, type Registry } from 'prom-client';
import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { AppError } from '../errors.js';
import { mailboxes, messages } from '../db/schema.js';
import type { AuditEntry } from './audit.js';
import type { GrantsRepo } from './grants.repo.js';

/*
 * The Gmail data guard (P-02, P-03, P-04, invariant 5): every read of Gmail message content
 * goes through `readContent`. The owner reads their own mail; anyone else needs a recorded
 * basis, and every non-owner read and every refusal is written to the audit log.
 */

/** Why content may be read. `service_operation` is the service itself processing the owner's mail for the owner (sync reading a bounce notice). */
export const CONTENT_BASES = ['owner', 'grant', 'security', 'legal', 'aggregate', 'service_operation'] as const;
export type ContentBasis = (typeof CONTENT_BASES)[number];

/** Purposes Gmail data is never used for, whoever asks (P-02, P-04). */
export const REFUSED_PURPOSES = ['advertising', 'ai_training', 'sale'] as const;
/** Every purpose a caller may state; the refused ones are listed so that asking for them is a recorded refusal, not a typo. */
export const CONTENT_PURPOSES = ['service', 'support', 'security', 'legal', 'statistics', ...REFUSED_PURPOSES] as const;
export type ContentPurpose = (typeof CONTENT_PURPOSES)[number];

/** Bases that need an admin or owner of the workspace and a case reference. */
const CASE_BASES = new Set<ContentBasis>(['security', 'legal']);
const DEFAULT_PURPOSE: Record<ContentBasis, ContentPurpose> = {
  owner: 'service',
  grant: 'service',
  security: 'security',
  legal: 'legal',
  aggregate: 'statistics',
  service_operation: 'service',
};

/** Who reads: a signed-in member, or a job of the service working for the mailbox's owner. */
export type ContentReader = { kind: 'member'; auth: AuthContext } | { kind: 'system'; job: string };

export interface ContentAccess {
  reader: ContentReader;
  /** Unset for a member: the owner's own read (anyone else is refused for want of a basis). */
  basis?: ContentBasis;
  purpose?: ContentPurpose;
  /** The security incident or legal matter this read belongs to (required for `security` and `legal`). */
  caseReference?: string;
}

/** The message whose content would be read. */
export interface ContentTarget {
  workspaceId: string;
  mailboxId: string;
  /** The member who connected the mailbox: the owner of its content. */
  ownerUserId: string;
  /** Our id of the message when we hold one (sync reads notices before storing anything). */
  messageId?: string;
  gmailMessageId: string;
}

export type ContentDecision =
  | { allowed: true; basis: ContentBasis; purpose: ContentPurpose; audited: boolean }
  | { allowed: false; basis: ContentBasis | 'none'; purpose: ContentPurpose; code: string; message: string };

/** Refused by the guard: 403 with a stable code, after the refusal was recorded. */
export class ContentAccessRefusedError extends AppError {
  constructor(code: string, message: string) {
    super(code, 403, message);
  }
}

type MessageOwners = { sentBy: string | null; mailboxOwner: string | null | undefined };

/** The caller's own mail: they sent it, or connected its mailbox (the owner of its content). One replies only to one's own. */
export function isOwnMessage(auth: AuthContext, message: MessageOwners): boolean {
  return message.sentBy === auth.userId || (message.mailboxOwner != null && message.mailboxOwner === auth.userId);
}

/**
 * Whether the caller sees a message's subject where the message is listed or looked up (a
 * contact's timeline, `GET /api/messages/:id`): a person, in their own mail. A subject is
 * content (P-03): anyone else sees that mail happened, and reads the subject with the body
 * through `readContent`, on a basis. An API key acts for its member but is no person: content
 * is read by one (the content routes refuse keys; src/api-keys/README.md), so a key sees none.
 */
export function seesMessageSubject(auth: AuthContext, message: MessageOwners): boolean {
  return auth.apiKeyId === undefined && isOwnMessage(auth, message);
}

/**
 * The same rule for rows read in SQL (a data subject export streams them): `messages.subject`
 * where `readerUserId` sent the message or owns its mailbox, else null.
 */
export function subjectSeenBy(readerUserId: string): SQL.Aliased<string | null> {
  return sql<string | null>`case when ${messages.sentBy} = ${readerUserId}::uuid
    or exists (select 1 from ${mailboxes} where ${mailboxes.id} = ${messages.mailboxId} and ${mailboxes.userId} = ${readerUserId}::uuid)
    then ${messages.subject} end`.as('subject');
}

/**
 * The rules, without I/O: `hasActiveGrant` answers whether the reader holds an unexpired,
 * unrevoked grant for this message (asked only for basis `grant`).
 */
export function decideContentAccess(access: ContentAccess, target: ContentTarget, hasActiveGrant: boolean): ContentDecision {
  const { reader } = access;
  const isOwner = reader.kind === 'member' && reader.auth.userId === target.ownerUserId;
  const basis: ContentBasis | 'none' = access.basis ?? (isOwner ? 'owner' : 'none');
  const purpose = access.purpose ?? (basis === 'none' ? 'service' : DEFAULT_PURPOSE[basis]);
  const refuse = (code: string, message: string): ContentDecision => ({ allowed: false, basis, purpose, code, message });

  if ((REFUSED_PURPOSES as readonly string[]).includes(purpose)) {
    return refuse('purpose_refused', `Gmail data is never used for ${purpose.replace('_', ' ')}`);
  }
  if (reader.kind === 'system') {
    return basis === 'service_operation'
      ? { allowed: true, basis, purpose, audited: false }
      : refuse('basis_not_allowed', 'The service reads mail only to operate it for the mailbox owner');
  }
  if (basis === 'service_operation') return refuse('basis_not_allowed', 'Only the service itself reads mail for operations');
  // The owner reads their own mail whatever basis they name.
  if (isOwner) return { allowed: true, basis: 'owner', purpose, audited: false };
  switch (basis) {
    case 'none':
    case 'owner':
      return refuse('access_basis_required', 'Only the mailbox owner reads this message without a basis: give basis=grant, security or legal');
    case 'aggregate':
      return refuse('aggregate_has_no_content', 'The aggregate basis gives counts only, never message content');
    case 'grant':
      return hasActiveGrant
        ? { allowed: true, basis, purpose, audited: true }
        : refuse('no_active_grant', 'The mailbox owner has not granted you access to this message, or the grant expired or was revoked');
    default:
      if (CASE_BASES.has(basis)) {
        if (reader.auth.role === 'member') return refuse('basis_needs_admin', `Only workspace owners and admins may read mail on a ${basis} basis`);
        if (!access.caseReference) return refuse('case_reference_required', `A ${basis} read needs a case reference`);
        return { allowed: true, basis, purpose, audited: true };
      }
      return refuse('access_basis_required', 'Unknown basis');
  }
}

export interface GmailGuardDeps {
  repo: Pick<GrantsRepo, 'findActive' | 'audit'>;
  registry: Registry;
  now?: () => Date;
}

export function createGmailGuard(deps: GmailGuardDeps) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());
  // Reads by the service for the owner are counted here, not audited one by one (see README "Gmail data guard").
  const reads = new Counter({
    name: 'inboxtrail_gmail_content_reads_total',
    help: 'Gmail message contents read through the privacy guard, by basis',
    labelNames: ['basis'] as const,
    registers: [deps.registry],
  });
  const refusals = new Counter({
    name: 'inboxtrail_gmail_content_refusals_total',
    help: 'Gmail content reads refused by the privacy guard, by code',
    labelNames: ['code'] as const,
    registers: [deps.registry],
  });

  const auditEntry = (access: ContentAccess, target: ContentTarget, action: string, detail: Record<string, unknown>): AuditEntry => ({
    workspaceId: target.workspaceId,
    actor: access.reader.kind === 'member' ? actorOf(access.reader.auth) : `system:${access.reader.job}`,
    action,
    subjectType: 'message',
    subjectId: target.messageId ?? null,
    detail: { mailboxId: target.mailboxId, ownerUserId: target.ownerUserId, gmailMessageId: target.gmailMessageId, ...detail },
    requestId: access.reader.kind === 'member' ? access.reader.auth.requestId : null,
  });

  return {
    /**
     * The one way to read Gmail content: decides, records, then runs `fetch`. A refusal is
     * recorded on its own (nothing else happens in that request) and thrown as a 403; an
     * allowed non-owner read is recorded before the fetch, so no content leaves without its record.
     */
    async readContent<T>(access: ContentAccess, target: ContentTarget, fetch: () => Promise<T>): Promise<T> {
      let grantId: string | undefined;
      if (access.basis === 'grant' && access.reader.kind === 'member' && target.messageId && access.reader.auth.userId !== target.ownerUserId) {
        grantId = (await repo.findActive(target.workspaceId, target.messageId, access.reader.auth.userId, now()))?.id;
      }
      const decision = decideContentAccess(access, target, grantId !== undefined);
      const common = { basis: decision.basis, purpose: decision.purpose, ...(access.caseReference ? { caseReference: access.caseReference } : {}) };
      if (!decision.allowed) {
        refusals.inc({ code: decision.code });
        await repo.audit(auditEntry(access, target, 'gmail.content_refused', { ...common, code: decision.code }));
        throw new ContentAccessRefusedError(decision.code, decision.message);
      }
      if (decision.audited) {
        await repo.audit(auditEntry(access, target, 'gmail.content_read', { ...common, ...(grantId ? { grantId } : {}) }));
      }
      reads.inc({ basis: decision.basis });
      return fetch();
    },
  };
}

export type GmailGuard = ReturnType<typeof createGmailGuard>;
