import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { AuditEntry } from './audit.js';
import { DAY_MS } from '../time.js';

/*
 * The two audit actions of P-13, shared by every kind of deletion so that the compliance
 * report can pair them: `deletion.requested` when an item is marked deleted (with the date
 * its purge is due) and `deletion.completed` when the purge job removed it for real.
 */

export type DeletedSubject = 'contact' | 'campaign' | 'mailbox' | 'user' | 'workspace';


/** When an item deleted at `at` is purged: `days` later (PURGE_AFTER_DAYS, at most 30). */
export const purgeDate = (at: Date, days: number) => new Date(at.getTime() + days * DAY_MS);

/** Who asked for a deletion, as the audit row names them: a signed-in user, or a job (`system:<job>`). */
export interface DeletionRequester {
  workspaceId: string;
  actor: string;
  requestId?: string;
}

export const requesterOf = (auth: AuthContext): DeletionRequester => ({ workspaceId: auth.workspaceId, actor: actorOf(auth), requestId: auth.requestId });

export function deletionRequested(by: DeletionRequester, subjectType: DeletedSubject, subjectId: string, purgeAfter: Date): AuditEntry {
  return {
    workspaceId: by.workspaceId,
    actor: by.actor,
    requestId: by.requestId,
    action: 'deletion.requested',
    subjectType,
    subjectId,
    detail: { purgeAfter: purgeAfter.toISOString() },
  };
}

export function deletionCompleted(workspaceId: string, subjectType: DeletedSubject, subjectId: string, purgeAfter: Date | null, counts: Record<string, number>): AuditEntry {
  return {
    workspaceId,
    actor: 'system:purge',
    action: 'deletion.completed',
    subjectType,
    subjectId,
    detail: { purgeAfter: purgeAfter?.toISOString() ?? null, removed: counts },
  };
}
