import type { ConsentStatus } from '../db/schema.js';
import { ConflictError } from '../errors.js';
import type { SuppressionListQueries, SuppressionReason, SuppressionRow } from './suppression.repo.js';

/*
 * The rules both sides of the suppression list share: the recipient's (suppression.service.ts)
 * and the workspace's own (suppression-list.service.ts) — who may undo an entry, how an entry is
 * shown and audited, and how a change is written to a contact's consent history.
 */

export const ALL = 'all';
export const topicScope = (topic: string) => `topic:${topic}`;
export const topicOf = (scope: string) => (scope.startsWith('topic:') ? scope.slice('topic:'.length) : undefined);

/** Rows the recipient made themself: only these may they undo (never a bounce, complaint or a sender's manual entry). */
export const RECIPIENT_REMOVABLE: readonly SuppressionReason[] = ['unsubscribe'];
/** Rows that record the recipient's own wish: an admin removes them only with new consent evidence. */
export const NEEDS_CONSENT_EVIDENCE: readonly SuppressionReason[] = ['unsubscribe', 'complaint'];
/** Whom a recipient's opt-out reaches (movedContacts): contacts moved from the address, and the one at it. */
export interface ReachedContacts {
  moved: string[];
  atAddress: string | undefined;
}

/** Whether the recipient may undo this entry themself: their own opt-out, unless a CRM user's reason holds it too. */
export const recipientMayRemove = (row: SuppressionRow) => RECIPIENT_REMOVABLE.includes(row.reason) && row.heldReason === null;
/** A recipient asked to undo an entry they did not make (or one a user's reason now holds): nothing changes. */
export const refuseResubscribe = (workspaceName: string) =>
  new ConflictError(
    'resubscribe_not_allowed',
    `Mail to this address was stopped by ${workspaceName} or because of a delivery problem, so it cannot be turned back on here. Please contact ${workspaceName}.`,
  );

/** The reason a recipient is shown for an entry they cannot undo: what holds it, else its own. */
export const lockReason = (row: SuppressionRow) => row.heldReason ?? row.reason;

export function presentSuppression(row: SuppressionRow) {
  return {
    id: row.id,
    email: row.email,
    scope: row.scope,
    reason: row.reason,
    source: row.source,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
    heldReason: row.heldReason,
  };
}

/** The audit log outlives every deletion (P-13), so it names the address only by its keyed hash. */
export const entryDetail = (row: SuppressionRow) => ({ addressHash: row.addressHash, scope: row.scope, reason: row.reason, source: row.source, createdAt: row.createdAt });

/**
 * Appends a consent record for the workspace's contact with this address, if there is one —
 * or, when given, for the contacts `reached` (movedContacts, read under their locks) — unless a
 * contact's latest record already says the same (so a replayed opt-out adds nothing).
 */
export async function recordConsent(
  q: SuppressionListQueries,
  policyVersion: string,
  entry: { workspaceId: string; email: string; status: ConsentStatus; source: string; actor: string; auditActor: string; evenIfUnchanged?: boolean; reached?: ReachedContacts },
) {
  const byAddress = entry.reached ? entry.reached.atAddress : await q.findContactIdByEmail(entry.workspaceId, entry.email);
  const contactIds = new Set(entry.reached?.moved);
  if (byAddress) contactIds.add(byAddress);
  for (const contactId of contactIds) {
    if (!entry.evenIfUnchanged && (await q.latestConsentStatus(entry.workspaceId, contactId)) === entry.status) continue;
    await q.appendConsent({ workspaceId: entry.workspaceId, contactId, status: entry.status, source: entry.source, policyVersion, actor: entry.actor }, entry.auditActor);
  }
}
