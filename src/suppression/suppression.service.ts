import { actorOf, RECIPIENT_ACTOR } from '../auth/actor.js';
import { keysetPage, type PageCursor } from '../http/cursor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { ConsentStatus } from '../db/schema.js';
import { againAfterConcurrencyFailure, ReadChangedBeforeLock } from '../db/pg-errors.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { TokenCodec } from '../tracking/tokens.js';
import type { SuppressionListQueries, SuppressionListRepo, SuppressionReason, SuppressionRow } from './suppression.repo.js';
import { applyTrackingChoice, trackingViewOf, type TrackingView } from './tracking-preference.js';
import { maskEmailAddress, type PreferenceChoices, type PreferencesView, type RecipientView } from './recipient-view.js';

/*
 * The suppression list (P-08) and the recipient's side of it (P-09, P-11): one-click
 * unsubscribe, the preference center, and the workspace's own list behind /api.
 *
 * Every change is one transaction that writes the suppression row, the audit row and,
 * when the address is a contact, the consent record; callers answer only after it has
 * committed (invariant 2).
 */

export const ALL = 'all';
export const topicScope = (topic: string) => `topic:${topic}`;
const topicOf = (scope: string) => (scope.startsWith('topic:') ? scope.slice('topic:'.length) : undefined);

/** Rows the recipient made themself: only these may they undo (never a bounce, complaint or a sender's manual entry). */
const RECIPIENT_REMOVABLE: readonly SuppressionReason[] = ['unsubscribe'];
/** Rows that record the recipient's own wish: an admin removes them only with new consent evidence. */
const NEEDS_CONSENT_EVIDENCE: readonly SuppressionReason[] = ['unsubscribe', 'complaint'];
/** Whether the recipient may undo this entry themself: their own opt-out, unless a CRM user's reason holds it too. */
const recipientMayRemove = (row: SuppressionRow) => RECIPIENT_REMOVABLE.includes(row.reason) && row.heldReason === null;
/** The reason a recipient is shown for an entry they cannot undo: what holds it, else its own. */
const lockReason = (row: SuppressionRow) => row.heldReason ?? row.reason;

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
const entryDetail = (row: SuppressionRow) => ({ addressHash: row.addressHash, scope: row.scope, reason: row.reason, source: row.source, createdAt: row.createdAt });


/** Every bad, forged, truncated or orphaned link gets the same answer, which says nothing about why. */
const linkNotFound = () => new NotFoundError('Link', 'link_not_found');

export function createSuppressionService(deps: { repo: SuppressionListRepo; codec: TokenCodec; policyVersion: string; now?: () => Date }) {
  const { repo, codec, policyVersion } = deps;
  const now = deps.now ?? (() => new Date());

  interface TokenTarget {
    recipientId: string;
    workspaceId: string;
    email: string;
    campaignId?: string;
    workspaceName: string;
  }

  /**
   * A token names a recipient row (which outlives campaigns and contacts) and maybe the
   * campaign it was sent with. The workspace is the recipient's; a campaign that still
   * exists must belong to it, a deleted one no longer matters.
   */
  async function resolveToken(q: SuppressionListQueries, token: string): Promise<TokenTarget> {
    const decoded = codec.decode(token, 'unsubscribe');
    if (!decoded || decoded.kind !== 'unsubscribe') throw linkNotFound();
    const recipient = await q.findRecipientById(decoded.recipientId);
    if (!recipient) throw linkNotFound();
    if (decoded.campaignId) {
      const campaignWorkspace = await q.findCampaignWorkspaceId(decoded.campaignId);
      if (campaignWorkspace !== undefined && campaignWorkspace !== recipient.workspaceId) throw linkNotFound();
    }
    const workspaceName = await q.findWorkspaceName(recipient.workspaceId);
    if (workspaceName === undefined) throw linkNotFound();
    return {
      recipientId: recipient.id,
      workspaceId: recipient.workspaceId,
      email: recipient.email,
      campaignId: decoded.campaignId,
      workspaceName,
    };
  }

  const viewOf = (target: TokenTarget): RecipientView => ({ workspaceName: target.workspaceName, maskedEmail: maskEmailAddress(target.email) });

  /**
   * Appends a consent record for the workspace's contact with this address, if there is one,
   * and for the contacts in `alsoContactIds` (movedContacts), unless a contact's latest record
   * already says the same (so a replayed opt-out adds nothing).
   */
  async function recordConsent(
    q: SuppressionListQueries,
    entry: { workspaceId: string; email: string; status: ConsentStatus; source: string; actor: string; auditActor: string; evenIfUnchanged?: boolean; alsoContactIds?: string[] },
  ) {
    const contactIds = new Set(entry.alsoContactIds);
    const byAddress = await q.findContactIdByEmail(entry.workspaceId, entry.email);
    if (byAddress) contactIds.add(byAddress);
    for (const contactId of contactIds) {
      if (!entry.evenIfUnchanged && (await q.latestConsentStatus(entry.workspaceId, contactId)) === entry.status) continue;
      await q.insertConsent({ workspaceId: entry.workspaceId, contactId, status: entry.status, source: entry.source, policyVersion, actor: entry.actor }, entry.auditActor);
    }
  }

  /**
   * An opt-out through a recipient's link is also the person's whose campaign mail went to that
   * address: their contact, when its address changed since, is opted out too (marketing to the
   * new address then needs a new opt-in; the suppression entry stays the address's).
   * Everyone it touches is locked at once, in one key order (address-lock.ts): the address, the
   * contacts that moved from it and the contact at it, with their addresses and those of their
   * unsent sends — taken one after another, a claim or a 1:1 send locking two of them the other
   * way round deadlocked with it (a reviewer's finding). Then read again: an address change takes
   * the same locks (lockAddressChange), so once they are held no contact moves; one that moved
   * between the first read and the locks makes the transaction run again (40001: the caller's
   * againAfterConcurrencyFailure). Reading only before the lock, a contact moving in between was
   * in neither lookup and kept its opt-in (an attacker's finding).
   */
  async function movedContacts(q: SuppressionListQueries, target: TokenTarget): Promise<string[]> {
    const read = async () => {
      const moved = await q.findContactsMovedFromRecipient(target.workspaceId, target.recipientId, target.campaignId);
      const atAddress = await q.findContactIdByEmail(target.workspaceId, target.email);
      return { moved, touched: atAddress ? [...moved, atAddress] : moved };
    };
    const before = await read();
    await q.lockAddressesAndContacts(target.workspaceId, [target.email], before.touched);
    const after = await read();
    if (after.touched.some((id) => !before.touched.includes(id))) throw new ReadChangedBeforeLock('the contacts at or moved from this address');
    return after.moved;
  }

  async function addEntry(
    q: SuppressionListQueries,
    target: TokenTarget,
    scope: string,
    source: string,
    via: string,
  ): Promise<SuppressionRow | undefined> {
    const entry = { workspaceId: target.workspaceId, email: target.email, scope, reason: 'unsubscribe' as const, source, createdBy: null };
    const inserted = await q.insertEntry(entry);
    // An entry a user or a bounce made already stops the mail: the recipient's wish is recorded on
    // it (adoptEntry). Neither inserted nor adopted: the entry is theirs already — or it was
    // removed in between, and then it is inserted now (the address lock is held from here on).
    const previous = inserted ? undefined : await q.findEntry(target.workspaceId, target.email, scope);
    const adopted = inserted ? undefined : await q.adoptEntry(target.workspaceId, target.email, scope, source);
    const row = inserted ?? adopted ?? (previous?.reason === 'unsubscribe' ? undefined : await q.insertEntry(entry));
    if (row) {
      await q.insertAudit({
        workspaceId: target.workspaceId,
        actor: `recipient:${target.recipientId}`,
        action: 'suppression.added',
        subjectType: 'suppression',
        subjectId: row.id,
        detail: { ...entryDetail(row), via, ...(adopted ? { heldReason: adopted.heldReason, previousSource: previous?.source } : {}) },
      });
    }
    return row;
  }

  function preferencesView(target: TokenTarget, entries: SuppressionRow[], campaignTopics: string[], tracking: TrackingView | undefined): PreferencesView {
    const byScope = new Map(entries.map((e) => [e.scope, e]));
    const all = byScope.get(ALL);
    return {
      ...viewOf(target),
      everything: { suppressed: Boolean(all), own: all?.reason === 'unsubscribe', reason: all && lockReason(all), lockedByOthers: Boolean(all && !recipientMayRemove(all)) },
      topics: knownTopics(entries, campaignTopics).map((name) => {
        const row = byScope.get(topicScope(name));
        return { name, subscribed: !row, reason: row && lockReason(row), lockedByOthers: Boolean(row && !recipientMayRemove(row)) };
      }),
      tracking,
    };
  }

  /** The workspace's campaign topics, plus any this address opted out of whose campaigns are gone (so they can be undone). */
  function knownTopics(entries: SuppressionRow[], campaignTopics: string[]): string[] {
    const topics = new Set(campaignTopics);
    for (const entry of entries) {
      const topic = topicOf(entry.scope);
      if (topic !== undefined) topics.add(topic);
    }
    return [...topics].sort((a, b) => a.localeCompare(b));
  }

  const refuseResubscribe = (workspaceName: string) =>
    new ConflictError(
      'resubscribe_not_allowed',
      `Mail to this address was stopped by ${workspaceName} or because of a delivery problem, so it cannot be turned back on here. Please contact ${workspaceName}.`,
    );

  return {
    /* ------------------------------------------------ the recipient's side (token is the credential) */

    /** What the unsubscribe page shows. Reads only: mail scanners prefetch this URL. */
    async unsubscribePage(token: string): Promise<RecipientView & { alreadySuppressed: boolean }> {
      const target = await resolveToken(repo, token);
      // Only the recipient's own opt-out: over a user's or a bounce's entry the button still records theirs.
      const all = await repo.findEntry(target.workspaceId, target.email, ALL);
      return { ...viewOf(target), alreadySuppressed: all?.reason === 'unsubscribe' };
    },

    /**
     * One-click (RFC 8058) or the page's button: suppress the address workspace-wide.
     * Idempotent; resolves only once the transaction has committed (invariant 2).
     */
    async unsubscribe(token: string): Promise<RecipientView & { added: boolean }> {
      // A mail provider does not retry a one-click POST: a transaction lost to a race runs again here.
      return againAfterConcurrencyFailure(() => repo.transaction(async (tx) => {
        const target = await resolveToken(tx, token);
        const moved = await movedContacts(tx, target);
        // The stats count a campaign's unsubscribes from exactly this source.
        const source = target.campaignId ? `campaign:${target.campaignId}` : 'unsubscribe-link';
        const added = await addEntry(tx, target, ALL, source, 'unsubscribe-link');
        await recordConsent(tx, {
          workspaceId: target.workspaceId,
          email: target.email,
          status: 'opted_out',
          source: 'unsubscribe-link',
          actor: RECIPIENT_ACTOR,
          auditActor: `recipient:${target.recipientId}`,
          alsoContactIds: moved,
        });
        return { ...viewOf(target), added: Boolean(added) };
      }));
    },

    async preferences(token: string): Promise<PreferencesView> {
      const target = await resolveToken(repo, token);
      const [entries, topics, tracking] = await Promise.all([
        repo.listEntriesOfAddress(target.workspaceId, target.email),
        repo.listCampaignTopics(target.workspaceId),
        trackingViewOf(repo, target),
      ]);
      return preferencesView(target, entries, topics, tracking);
    },

    /**
     * Applies the preference center's form. All or nothing: an unknown topic, or undoing an
     * entry the recipient did not make, changes nothing.
     */
    async savePreferences(token: string, choices: PreferenceChoices): Promise<PreferencesView & { changed: number }> {
      return againAfterConcurrencyFailure(() => repo.transaction(async (tx) => {
        const target = await resolveToken(tx, token);
        // Under the locks of everyone an opt-out or a tracking choice reaches (movedContacts): a
        // contact moving meanwhile is found on one side of its move (a reviewer's finding: the
        // tracking choice read the contacts unlocked, and a move in between lost a refusal).
        const moved = choices.action === 'unsubscribe-all' || choices.tracking ? await movedContacts(tx, target) : [];
        const entries = await tx.listEntriesOfAddress(target.workspaceId, target.email);
        const known = new Set(knownTopics(entries, await tx.listCampaignTopics(target.workspaceId)));
        const shown = [...new Set(choices.topics)];
        if (shown.some((t) => !known.has(t))) throw new ValidationError([{ field: 'topics', message: 'names a topic this sender does not have' }]);
        if (choices.subscribed.some((t) => !shown.includes(t))) {
          throw new ValidationError([{ field: 'subscribed', message: 'names a topic the form did not show' }]);
        }

        const byScope = new Map(entries.map((e) => [e.scope, e]));
        const actor = `recipient:${target.recipientId}`;
        let added = 0;
        let removed = 0;
        let addedAll = false;
        let removedAll = false;

        const remove = async (row: SuppressionRow) => {
          if (!recipientMayRemove(row)) throw refuseResubscribe(target.workspaceName);
          // Only as it was read: a user's reason added since holds it (holdEntry).
          if (!(await tx.deleteEntry(target.workspaceId, row.id, { unheldOf: RECIPIENT_REMOVABLE }))) throw refuseResubscribe(target.workspaceName);
          await tx.insertAudit({
            workspaceId: target.workspaceId,
            actor,
            action: 'suppression.removed',
            subjectType: 'suppression',
            subjectId: row.id,
            detail: { entry: entryDetail(row), via: 'preference-center' },
          });
          byScope.delete(row.scope);
          removed += 1;
        };

        if (choices.action === 'unsubscribe-all') {
          // Like the one-click link, an opt-out from everything is counted for the campaign whose mail led here.
          const source = target.campaignId ? `campaign:${target.campaignId}` : 'preference-center';
          if (byScope.get(ALL)?.reason !== 'unsubscribe' && (await addEntry(tx, target, ALL, source, 'preference-center'))) {
            added += 1;
            addedAll = true;
          }
        } else if (choices.action === 'resubscribe-all') {
          const all = byScope.get(ALL);
          if (all) {
            await remove(all);
            removedAll = true;
          }
        } else {
          for (const topic of shown) {
            const row = byScope.get(topicScope(topic));
            const wanted = choices.subscribed.includes(topic);
            if (!wanted && !row && (await addEntry(tx, target, topicScope(topic), 'preference-center', 'preference-center'))) added += 1;
            if (wanted && row) await remove(row);
          }
        }

        // Consent follows the workspace-wide entry only: a topic choice neither withdraws nor gives
        // it (checking a topic again must not undo an opt-out the sender recorded, say by phone).
        const base = { workspaceId: target.workspaceId, email: target.email, source: 'preference-center', actor: RECIPIENT_ACTOR, auditActor: `recipient:${target.recipientId}` };
        if (addedAll) await recordConsent(tx, { ...base, status: 'opted_out', alsoContactIds: moved });
        else if (removedAll) await recordConsent(tx, { ...base, status: 'opted_in' });

        const trackingChanged = choices.tracking ? await applyTrackingChoice(tx, target, choices.tracking, now()) : 0;

        const after = await tx.listEntriesOfAddress(target.workspaceId, target.email);
        const tracking = await trackingViewOf(tx, target);
        return { ...preferencesView(target, after, [...known], tracking), changed: added + removed + trackingChanged };
      }));
    },

    /* ------------------------------------------------------------- the workspace's list (/api) */

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
        const seen = await tx.findEntryById(auth.workspaceId, id);
        if (seen?.email) await tx.lockAddressesAndContacts(auth.workspaceId, [seen.email], []);
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
          await recordConsent(tx, {
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

export type SuppressionService = ReturnType<typeof createSuppressionService>;
