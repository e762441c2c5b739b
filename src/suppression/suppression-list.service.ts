import { actorOf } from '../auth/actor.js';
import { keysetPage, type PageCursor } from '../http/cursor.js';
import type { AuthContext } from '../auth/auth.service.js';
import { NotFoundError, ValidationError } from '../errors.js';
import type { SuppressionListRepo, SuppressionReason, SuppressionRow } from './suppression.repo.js';
import { ALL, entryDetail, NEEDS_CONSENT_EVIDENCE, presentSuppression, recipientMayRemove, RECIPIENT_REMOVABLE, recordConsent } from './suppression-rules.js';

/** The workspace's own suppression list behind /api: list, add, remove (the recipient's side is suppression.service.ts). */
export function createSuppressionListService(deps: { repo: SuppressionListRepo; policyVersion: string }) {
  const { repo, policyVersion } = deps;
  return {
    async list(auth: AuthContext, query: { limit: number; cursor?: PageCursor; email?: string; reason?: SuppressionReason; scope?: string }) {
      const rows = await repo.listEntries(auth.workspaceId, {
        limit: query.limit + 1,
        before: query.cursor,
        email: query.email,
        reason: query.reason,
        scope: query.scope,
      });
      const { page, nextCursor } = keysetPage(rows, query.limit);
      return { suppressions: page.map(presentSuppression), nextCursor };
    },

    /**
     * Adding is always safe, so any member may. Idempotent on (address, scope): the existing
     * entry is kept and returned — and when it is the recipient's own opt-out, this user's
     * reason holds it (`heldReason`, audited), so the recipient can no longer undo it.
     */
    async add(auth: AuthContext, input: { email: string; reason: 'manual' | 'complaint'; scope: string; note?: string }) {
      return repo.transaction(async (tx) => {
        const audited = (row: SuppressionRow, extra: Record<string, unknown>) =>
          tx.insertAudit({
            workspaceId: auth.workspaceId,
            actor: actorOf(auth),
            requestId: auth.requestId,
            action: 'suppression.added',
            subjectType: 'suppression',
            subjectId: row.id,
            detail: { ...entryDetail(row), ...extra, ...(input.note ? { note: input.note } : {}) },
          });
        const existing = await tx.findEntry(auth.workspaceId, input.email, input.scope);
        const held = existing && recipientMayRemove(existing) ? await tx.holdEntry(auth.workspaceId, existing, input.reason, RECIPIENT_REMOVABLE) : undefined;
        if (held) {
          await audited(held, { heldReason: input.reason });
          return { created: false, suppression: presentSuppression(held) };
        }
        if (existing && !recipientMayRemove(existing)) return { created: false, suppression: presentSuppression(existing) };
        const row = await tx.insertEntry({
          workspaceId: auth.workspaceId,
          email: input.email,
          scope: input.scope,
          reason: input.reason,
          source: 'api',
          createdBy: auth.userId,
        });
        if (!row) {
          // Someone added the same entry a moment ago: theirs stands.
          return { created: false, suppression: presentSuppression((await tx.findEntry(auth.workspaceId, input.email, input.scope))!) };
        }
        await audited(row, {});
        return { created: true, suppression: presentSuppression(row) };
      });
    },

    /**
     * Admins only (the route checks the role), with a note. An entry that records the
     * recipient's own wish (unsubscribe, complaint) also needs the new consent's source:
     * that is the evidence the recipient asked to be mailed again, and it is appended to
     * the contact's consent history.
     */
    async remove(auth: AuthContext, id: string, input: { note: string; consentSource?: string }) {
      await repo.transaction(async (tx) => {
        // Under the address's opt-out lock, then read again: a recipient's opt-out adopting this
        // entry meanwhile (adoptEntry) either committed first — its reason now asks for consent
        // evidence — or waits for this removal and then makes an entry of its own.
        // With the contact at the address (whose consent record the removal may append, and whose
        // unsent sends' addresses that takes), all in one key order: the address alone first could
        // deadlock with a claim or a move taking both (a reviewer's finding).
        const seen = await tx.findEntryById(auth.workspaceId, id);
        const contactAt = seen?.email ? await tx.findContactIdByEmail(auth.workspaceId, seen.email) : undefined;
        if (seen?.email) await tx.lockAddressesAndContacts(auth.workspaceId, [seen.email], contactAt ? [contactAt] : []);
        const entry = seen?.email ? await tx.findEntryById(auth.workspaceId, id) : seen;
        if (!entry) throw new NotFoundError('Suppression');
        if (NEEDS_CONSENT_EVIDENCE.includes(entry.reason) && !input.consentSource) {
          throw new ValidationError([
            { field: 'consentSource', message: `is required to remove a ${entry.reason} entry: say where the recipient's new consent came from` },
          ]);
        }
        // Two removals at once both read the entry; only the one whose delete found it goes on
        // (one audit row, one consent record), the other is a 404 as if it came later.
        if (!(await tx.deleteEntry(auth.workspaceId, id))) throw new NotFoundError('Suppression');
        await tx.insertAudit({
          workspaceId: auth.workspaceId,
          actor: actorOf(auth),
          requestId: auth.requestId,
          action: 'suppression.removed',
          subjectType: 'suppression',
          subjectId: entry.id,
          detail: { note: input.note, entry: entryDetail(entry), ...(input.consentSource ? { consentSource: input.consentSource } : {}) },
        });
        // A purged entry (hash only) has no contact left to record the consent on.
        if (input.consentSource && entry.email !== null && !(await tx.findEntry(auth.workspaceId, entry.email, ALL))) {
          await recordConsent(tx, policyVersion, {
            workspaceId: auth.workspaceId,
            email: entry.email,
            status: 'opted_in',
            source: input.consentSource,
            actor: actorOf(auth),
            auditActor: actorOf(auth),
            evenIfUnchanged: true,
          });
        }
      });
    },
  };
}
