import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { NotFoundError } from '../errors.js';
import type { SelfExportRepo } from './export.repo.js';
import type { ExportSection } from './json-stream.js';
import type { ContactRecord, ResolvedScope, SubjectDataRepo } from './subject-data.repo.js';

/*
 * Exports (P-12). Each one is audited (`privacy.exported`) before its first byte is
 * written, and returned as sections that the route streams (json-stream.ts): nothing is
 * built in memory. Gmail content is not exported (only metadata we hold); if it ever is,
 * it must be read through the privacy guard.
 */

/** The kinds of data a scoped export can hold: the fixed list a legal request chooses from. */
export const DATA_KINDS = ['contacts', 'consents', 'messages', 'mail_events', 'campaign_sends', 'tracking_events', 'suppressions'] as const;
export type DataKind = (typeof DATA_KINDS)[number];

const FORMAT = 'inboxtrail-export/1';

/**
 * The sections of a subject scope, in DATA_KINDS order, only the kinds asked for.
 * `subjectsFor`: mail subjects only where that member sent the mail or owns its mailbox (P-03:
 * a subject is content), none when null (an API key); a legal disclosure, which has a stated
 * basis and case reference, omits it.
 */
export function subjectSections(repo: SubjectDataRepo, scope: ResolvedScope, contacts: ContactRecord[], kinds: readonly DataKind[], subjectsFor?: string | null): ExportSection[] {
  const readers: Record<DataKind, () => unknown> = {
    contacts: () => contacts,
    consents: () => repo.consents(scope),
    messages: () => repo.messages(scope, subjectsFor),
    mail_events: () => repo.mailEvents(scope),
    campaign_sends: () => repo.campaignSends(scope),
    tracking_events: () => repo.trackingEvents(scope),
    suppressions: () => repo.suppressions(scope),
  };
  return DATA_KINDS.filter((kind) => kinds.includes(kind)).map((kind) => [kind, readers[kind]()] as const);
}

export function createExportService(deps: { self: SelfExportRepo; subjects: SubjectDataRepo; now?: () => Date }) {
  const { self, subjects } = deps;
  const now = deps.now ?? (() => new Date());

  return {
    /** Everything held about the caller, in the workspaces they belong to. Never a password hash or token. */
    async exportSelf(auth: AuthContext): Promise<ExportSection[]> {
      const profile = await self.profile(auth.userId);
      if (!profile) throw new NotFoundError('User');
      await self.recordAudit({
        workspaceId: auth.workspaceId,
        actor: actorOf(auth),
        requestId: auth.requestId,
        action: 'privacy.exported',
        subjectType: 'user',
        subjectId: auth.userId,
        detail: { kind: 'self' },
      });
      return [
        ['format', FORMAT],
        ['exportedAt', now().toISOString()],
        ['note', 'Gmail message content is not stored by inboxtrail and is not part of this export; mail below is metadata only.'],
        ['user', profile],
        ['memberships', await self.memberships(auth.userId)],
        ['mailboxes', self.mailboxes(auth.userId)],
        ['messagesSent', self.messagesSent(auth.userId)],
        ['campaignsCreated', self.campaignsCreated(auth.userId)],
        ['consentsRecorded', self.consentsRecorded(auth.userId)],
        ['suppressionsRecorded', self.suppressionsRecorded(auth.userId)],
        ['auditLog', self.auditRows(auth.userId)],
      ];
    },

    /**
     * A data subject request: everything the workspace holds about one address. Admins only
     * (the route checks). The audit row names the contact, never the address, so that a
     * later deletion of the address leaves nothing of it in the append-only log.
     */
    async exportRecipient(auth: AuthContext, email: string): Promise<ExportSection[]> {
      const { scope, contacts } = await subjects.resolve({ workspaceId: auth.workspaceId, addresses: [email.toLowerCase()], contactIds: [], mailboxIds: [] });
      await subjects.recordAudit({
        workspaceId: auth.workspaceId,
        actor: actorOf(auth),
        requestId: auth.requestId,
        action: 'privacy.exported',
        subjectType: 'recipient',
        subjectId: contacts[0]?.id ?? null,
        detail: { kind: 'data_subject', contactIds: scope.resolvedContactIds },
      });
      return [
        ['format', FORMAT],
        ['exportedAt', now().toISOString()],
        ['email', email],
        ['note', "A message's subject is shown only where you sent it or it is in your mailbox, and never to an API key (P-03); a legal request (POST /api/privacy/legal-requests, with a basis and case reference) discloses the others."],
        ...subjectSections(subjects, scope, contacts, DATA_KINDS, auth.apiKeyId === undefined ? auth.userId : null),
      ];
    },
  };
}

export type ExportService = ReturnType<typeof createExportService>;
