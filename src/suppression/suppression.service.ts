import { RECIPIENT_ACTOR } from '../auth/actor.js';
import { againAfterConcurrencyFailure, ReadChangedBeforeLock } from '../db/pg-errors.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { TokenCodec } from '../tracking/tokens.js';
import type { SuppressionListQueries, SuppressionListRepo, SuppressionRow } from './suppression.repo.js';
import { applyTrackingChoice, trackingViewOf, type TrackingView } from './tracking-preference.js';
import { createSuppressionListService } from './suppression-list.service.js';
import { ALL, entryDetail, lockReason, recipientMayRemove, RECIPIENT_REMOVABLE, recordConsent, topicOf, topicScope, type ReachedContacts } from './suppression-rules.js';
import { maskEmailAddress, type PreferenceChoices, type PreferencesView, type RecipientView } from './recipient-view.js';

/*
 * The suppression list (P-08) and the recipient's side of it (P-09, P-11): one-click
 * unsubscribe and the preference center here; the workspace's own list behind /api in
 * suppression-list.service.ts, the rules both share in suppression-rules.ts.
 *
 * Every change is one transaction that writes the suppression row, the audit row and,
 * when the address is a contact, the consent record; callers answer only after it has
 * committed (invariant 2).
 */

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
    ...createSuppressionListService({ repo, policyVersion }),

      recipientId: recipient.id,
      workspaceId: recipient.workspaceId,
      email: recipient.email,
      campaignId: decoded.campaignId,
      workspaceName,
    };
  }

  const viewOf = (target: TokenTarget): RecipientView => ({ workspaceName: target.workspaceName, maskedEmail: maskEmailAddress(target.email) });

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
  async function movedContacts(q: SuppressionListQueries, target: TokenTarget): Promise<ReachedContacts> {
    const read = async () => {
      const moved = await q.findContactsMovedFromRecipient(target.workspaceId, target.recipientId, target.campaignId);
      const atAddress = await q.findContactIdByEmail(target.workspaceId, target.email);
      return { moved, atAddress, touched: atAddress ? [...moved, atAddress] : moved };
    };
    const before = await read();
    await q.lockAddressesAndContacts(target.workspaceId, [target.email], before.touched);
    const after = await read();
    if (after.touched.some((id) => !before.touched.includes(id))) throw new ReadChangedBeforeLock('the contacts at or moved from this address');
    return { moved: after.moved, atAddress: after.atAddress };
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
    ...createSuppressionListService({ repo, policyVersion }),

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
        const reached = await movedContacts(tx, target);
        // The stats count a campaign's unsubscribes from exactly this source.
        const source = target.campaignId ? `campaign:${target.campaignId}` : 'unsubscribe-link';
        const added = await addEntry(tx, target, ALL, source, 'unsubscribe-link');
        await recordConsent(tx, policyVersion, {
          workspaceId: target.workspaceId,
          email: target.email,
          status: 'opted_out',
          source: 'unsubscribe-link',
          actor: RECIPIENT_ACTOR,
          auditActor: `recipient:${target.recipientId}`,
          reached,
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
        const reached = choices.action === 'unsubscribe-all' || choices.tracking ? await movedContacts(tx, target) : undefined;
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
        if (addedAll) await recordConsent(tx, policyVersion, { ...base, status: 'opted_out', reached });
        else if (removedAll) await recordConsent(tx, policyVersion, { ...base, status: 'opted_in' });

        const trackingChanged = choices.tracking ? await applyTrackingChoice(tx, target, choices.tracking, now()) : 0;

        const after = await tx.listEntriesOfAddress(target.workspaceId, target.email);
        const tracking = await trackingViewOf(tx, target);
        return { ...preferencesView(target, after, [...known], tracking), changed: added + removed + trackingChanged };
      }));
    },

  };
}

export type SuppressionService = ReturnType<typeof createSuppressionService>;

export { ALL, presentSuppression, topicScope } from './suppression-rules.js';
