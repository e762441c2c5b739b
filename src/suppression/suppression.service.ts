import { RECIPIENT_ACTOR } from '../auth/actor.js';
import { againAfterConcurrencyFailure } from '../db/pg-errors.js';
import { ValidationError } from '../errors.js';
import type { TokenCodec } from '../tracking/tokens.js';
import type { SuppressionListQueries, SuppressionListRepo, SuppressionRow } from './suppression.repo.js';
import { refusalsToAllow, refuseTracking, trackingViewOf, type TrackingRefusal, type TrackingView } from './tracking-preference.js';
import { createSuppressionListService } from './suppression-list.service.js';
import { ALL, entryDetail, lockReason, recipientMayRemove, recordConsent, refuseResubscribe, topicOf, topicScope } from './suppression-rules.js';
import { auditRecipientChange, movedContacts, resolveToken as resolveRecipientToken, viewOf, type TokenTarget } from './recipient-target.js';
import type { PreferenceChoices, PreferencesView, RecipientView } from './recipient-view.js';
import { createResubscribeConfirmation, MAX_ENTRIES_PER_CONFIRMATION, type ResubscribeRequest } from './resubscribe.service.js';

/*
 * The suppression list (P-08) and the recipient's side of it (P-09, P-11): one-click
 * unsubscribe and the preference center here (whom a link speaks for: recipient-target.ts; the
 * mailed confirmation that undoes an opt-out: resubscribe.service.ts); the workspace's own list
 * behind /api in suppression-list.service.ts, the rules both share in suppression-rules.ts.
 *
 * Every change is one transaction that writes the suppression row, the audit row and,
 * when the address is a contact, the consent record; callers answer only after it has
 * committed (invariant 2).
 */

export function createSuppressionService(deps: {
  repo: SuppressionListRepo;
  codec: TokenCodec;
  policyVersion: string;
  /** Undoing an opt-out through a link: confirmed by the address itself (resubscribe.service.ts). */
  resubscribe: Omit<Parameters<typeof createResubscribeConfirmation>[0], 'repo' | 'codec' | 'policyVersion'>;
  now?: () => Date;
}) {
  const { repo, codec, policyVersion } = deps;
  const now = deps.now ?? (() => new Date());
  const resubscribe = createResubscribeConfirmation({ ...deps.resubscribe, repo, codec, policyVersion });
  const resolveToken = (q: SuppressionListQueries, token: string) => resolveRecipientToken(q, codec, token);

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
      await auditRecipientChange(q, target, 'suppression.added', row, { ...entryDetail(row), via, ...(adopted ? { heldReason: adopted.heldReason, previousSource: previous?.source } : {}) });
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
      // Its entry and its consent records each end sequences: one completion question for both (oneCompletionQuestion).
      return againAfterConcurrencyFailure(() => repo.transaction((tx) => tx.oneCompletionQuestion(async () => {
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
      })));
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
     * entry the recipient did not make, changes nothing. Opt-outs and a tracking refusal apply at
     * once; undoing one of the recipient's own (resubscribe-all, a topic checked again) or
     * allowing tracking again is not applied here but mailed to the address to confirm, one mail
     * for the form (resubscribe.service.ts), after the rest has committed.
     */
    async savePreferences(token: string, choices: PreferenceChoices): Promise<PreferencesView & { changed: number; resubscribe?: ResubscribeRequest }> {
      // Each topic's entry (and an opt-out's consent records) ends sequences: one completion question
      // for all, in key order (oneCompletionQuestion) — per topic, in the form's order, two forms
      // naming two topics in opposite orders deadlocked.
      const saved = await againAfterConcurrencyFailure(() => repo.transaction((tx) => tx.oneCompletionQuestion(async () => {
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
        let added = 0;
        let addedAll = false;
        /** The recipient's own entries the form asks to undo: confirmed by mail, never removed here. */
        const toUndo: SuppressionRow[] = [];
        const undo = (row: SuppressionRow) => {
          if (!recipientMayRemove(row)) throw refuseResubscribe(target.workspaceName);
          toUndo.push(row);
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
          if (all) undo(all);
        } else {
          for (const topic of shown) {
            const row = byScope.get(topicScope(topic));
            const wanted = choices.subscribed.includes(topic);
            if (!wanted && !row && (await addEntry(tx, target, topicScope(topic), 'preference-center', 'preference-center'))) added += 1;
            if (wanted && row) undo(row);
          }
        }
        if (toUndo.length > MAX_ENTRIES_PER_CONFIRMATION) {
          throw new ValidationError([{ field: 'subscribed', message: `at most ${MAX_ENTRIES_PER_CONFIRMATION} topics can be turned back on at once` }]);
        }

        // Consent follows the workspace-wide entry only: a topic choice neither withdraws nor gives
        // it (checking a topic again must not undo an opt-out the sender recorded, say by phone).
        if (addedAll) {
          await recordConsent(tx, policyVersion, {
            workspaceId: target.workspaceId,
            email: target.email,
            status: 'opted_out',
            source: 'preference-center',
            actor: RECIPIENT_ACTOR,
            auditActor: `recipient:${target.recipientId}`,
            reached,
          });
        }

        // A refusal applies at once; allowing again clears nothing here (refusalsToAllow: only the
        // contact at the link's address), it is confirmed by mail with the rest.
        const trackingChanged = choices.tracking === 'refuse' ? await refuseTracking(tx, target, now()) : 0;
        const toAllow: TrackingRefusal[] = choices.tracking === 'allow' ? await refusalsToAllow(tx, target) : [];

        const after = await tx.listEntriesOfAddress(target.workspaceId, target.email);
        const tracking = await trackingViewOf(tx, target);
        return { target, toUndo, toAllow, view: { ...preferencesView(target, after, [...known], tracking), changed: added + trackingChanged } };
      })));
      // Mailed only once the rest is durable, and never inside the transaction (a slow relay would hold the address lock).
      if (saved.toUndo.length === 0 && saved.toAllow.length === 0) return saved.view;
      return { ...saved.view, resubscribe: await resubscribe.requestConfirmation(saved.target, saved.toUndo, saved.toAllow) };
    },

    /** The mailed link's page: what its button would undo (opt-outs, a tracking refusal). Reads only. */
    resubscribePage: (token: string) => resubscribe.confirmationPage(token),
    /** The mailed link's button: undoes what the token names (resubscribe.service.ts). */
    confirmResubscribe: (token: string) => resubscribe.confirm(token),
  };
}

export type SuppressionService = ReturnType<typeof createSuppressionService>;

export { ALL, presentSuppression, topicScope } from './suppression-rules.js';
