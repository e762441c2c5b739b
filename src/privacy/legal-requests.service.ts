import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { NotFoundError, UnprocessableError } from '../errors.js';
import { subjectSections, type DataKind } from './export.service.js';
import type { ExportSection } from './json-stream.js';
import type { LegalRequestRow, LegalRequestsRepo } from './legal-requests.repo.js';
import type { SubjectDataRepo } from './subject-data.repo.js';

/*
 * Legal requests (P-16): an admin records who asks, on what legal basis, under which
 * reference, and the exact scope (people by contact id or address, and/or mailboxes; a
 * date range; data kinds). A disclosure exports that scope and nothing more, through the
 * same reader as a data subject export, and every disclosure is audited with the request id.
 */

export interface LegalRequestInput {
  authority: string;
  legalBasis: string;
  reference: string;
  scope: {
    contactIds: string[];
    addresses: string[];
    mailboxIds: string[];
    from: Date;
    to: Date;
    kinds: DataKind[];
  };
}

export function presentLegalRequest(row: LegalRequestRow) {
  return {
    id: row.id,
    authority: row.authority,
    legalBasis: row.legalBasis,
    reference: row.reference,
    scope: {
      contactIds: row.contactIds,
      addresses: row.addresses,
      /** How many addresses the scope named whose contact was purged since (kept as keyed hashes, not shown). */
      erasedAddresses: row.erasedAddressHashes.length,
      mailboxIds: row.mailboxIds,
      from: row.fromAt,
      to: row.toAt,
      kinds: row.dataKinds,
    },
    recordedBy: row.recordedBy,
    createdAt: row.createdAt,
    lastDisclosedAt: row.lastDisclosedAt,
  };
}

export function createLegalRequestsService(deps: { repo: LegalRequestsRepo; subjects: SubjectDataRepo; now?: () => Date }) {
  const { repo, subjects } = deps;
  const now = deps.now ?? (() => new Date());

  const find = async (auth: AuthContext, id: string) => {
    const row = await repo.findById(auth.workspaceId, id);
    if (!row) throw new NotFoundError('Legal request');
    return row;
  };

  return {
    /** The scope must name things this workspace has: an unknown contact or mailbox id is refused (422), nothing recorded. */
    async record(auth: AuthContext, input: LegalRequestInput) {
      const { contacts } = await subjects.resolve({ workspaceId: auth.workspaceId, addresses: [], contactIds: input.scope.contactIds, mailboxIds: [] });
      const known = new Set(contacts.map((c) => c.id));
      const unknownContacts = input.scope.contactIds.filter((id) => !known.has(id));
      if (unknownContacts.length > 0) throw new UnprocessableError('unknown_contact', 'The scope names contacts this workspace does not have', { contactIds: unknownContacts });
      const unknownMailboxes = await repo.missingMailboxes(auth.workspaceId, input.scope.mailboxIds);
      if (unknownMailboxes.length > 0) throw new UnprocessableError('unknown_mailbox', 'The scope names mailboxes this workspace does not have', { mailboxIds: unknownMailboxes });
      const row = await repo.transaction(async (tx) => {
        const created = await tx.insert({
          workspaceId: auth.workspaceId,
          authority: input.authority,
          legalBasis: input.legalBasis,
          reference: input.reference,
          contactIds: input.scope.contactIds,
          addresses: input.scope.addresses.map((a) => a.toLowerCase()),
          mailboxIds: input.scope.mailboxIds,
          fromAt: input.scope.from,
          toAt: input.scope.to,
          dataKinds: input.scope.kinds,
          recordedBy: auth.userId,
        });
        // Ids, basis and reference only: the addresses stay in the request row, out of the append-only log.
        await tx.recordAudit({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          requestId: auth.requestId,
          action: 'legal.recorded',
          subjectType: 'legal_request',
          subjectId: created.id,
          detail: { authority: created.authority, legalBasis: created.legalBasis, reference: created.reference, kinds: created.dataKinds },
        });
        return created;
      });
      return presentLegalRequest(row);
    },

    async list(auth: AuthContext) {
      return (await repo.list(auth.workspaceId)).map(presentLegalRequest);
    },

    async get(auth: AuthContext, id: string) {
      return presentLegalRequest(await find(auth, id));
    },

    /** The disclosure: exactly the request's scope. Audited (`legal.disclosed`) before the first byte. */
    async disclose(auth: AuthContext, id: string): Promise<ExportSection[]> {
      const request = await find(auth, id);
      const { scope, contacts } = await subjects.resolve({
        workspaceId: auth.workspaceId,
        addresses: request.addresses,
        contactIds: request.contactIds,
        mailboxIds: request.mailboxIds,
        from: request.fromAt,
        to: request.toAt,
        // Addresses erased by a purge since still make this a scope about people (never the whole mailbox).
        namesPeople: request.addresses.length + request.contactIds.length + request.erasedAddressHashes.length > 0,
      });
      await repo.transaction(async (tx) => {
        await tx.markDisclosed(auth.workspaceId, id, now());
        await tx.recordAudit({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          requestId: auth.requestId,
          action: 'legal.disclosed',
          subjectType: 'legal_request',
          subjectId: id,
          detail: { legalRequestId: id, reference: request.reference, kinds: request.dataKinds, contactIds: scope.resolvedContactIds },
        });
      });
      return [
        ['format', 'inboxtrail-legal-disclosure/1'],
        ['disclosedAt', now().toISOString()],
        ['request', presentLegalRequest(request)],
        ...subjectSections(subjects, scope, contacts, request.dataKinds as DataKind[]),
      ];
    },
  };
}

export type LegalRequestsService = ReturnType<typeof createLegalRequestsService>;
