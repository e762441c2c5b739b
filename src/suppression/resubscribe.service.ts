import { RECIPIENT_ACTOR } from '../auth/actor.js';
import type { AccountMailer } from '../auth/account-mail.js';
import { createSignedTokens, isExpiredTokenError } from '../auth/signed-tokens.js';
import type { AuthThrottle } from '../auth/throttle.js';
import type { Config } from '../config.js';
import { againAfterConcurrencyFailure } from '../db/pg-errors.js';
import { AppError } from '../errors.js';
import type { TokenCodec } from '../tracking/tokens.js';
import { auditRecipientChange, linkNotFound, movedContacts, resolveRecipient, viewOf, type TokenTarget } from './recipient-target.js';
import type { RecipientView } from './recipient-view.js';
import { ALL, entryDetail, recipientMayRemove, RECIPIENT_REMOVABLE, recordConsent, refuseResubscribe, topicOf } from './suppression-rules.js';
import type { SuppressionListQueries, SuppressionListRepo, SuppressionRow } from './suppression.repo.js';
import { allowTracking, refusalsStillSet, type TrackingRefusal } from './tracking-preference.js';

/*
 * Undoing a recipient's own opt-out takes a confirmation by the address itself. A link from the
 * mail (the preference center) is no proof of who holds it: mail is forwarded, archived and
 * kept for years, and the links in it keep working (P-09). So the preference center applies
 * every opt-out at once, but an undo — "Subscribe me again", a topic checked again — only mails
 * the address a link (`/p/confirm/<token>`) to confirm it; pressing that page's button undoes
 * exactly the entries the token names (an attacker's finding: a cross-site form post with an old
 * newsletter's link deleted the person's later opt-out and recorded an opt-in in their name).
 * Allowing tracking again ("Don't track my opens and clicks" turned off) is confirmed the same
 * way, in the same mail (an attacker's finding: the form cleared the contact's refusal at once).
 *
 * The token is a JWT of its own audience, valid RESUBSCRIBE_TTL_SECONDS, naming the recipient row,
 * the suppression entries (by id) to remove and the tracking refusals to clear (contact id and
 * the refusal's time; tokens mailed before had no `t`, and still work). It needs no table to be
 * used up: an entry once removed is gone, and an opt-out made again is a new entry with a new id,
 * which no earlier token names; a refusal cleared is gone, and one made again has another time.
 */

export const RESUBSCRIBE_TTL_SECONDS = 24 * 3600;
/** The entries one confirmation may name (a topic each, and `all`): it keeps the link a few kilobytes at most. */
export const MAX_ENTRIES_PER_CONFIRMATION = 100;
/** The mail's subject is fixed: it names no workspace (mail clients show subjects everywhere). */
export const RESUBSCRIBE_MAIL_SUBJECT = 'Please confirm: receive email again';
/** The subject when the mail only allows tracking again (no opt-out to undo). */
export const TRACKING_MAIL_SUBJECT = 'Please confirm: allow tracking of your opens and clicks';
/** The consent source of an opt-in given this way: by the recipient, confirmed from their mailbox. */
export const CONFIRMED_SOURCE = 'preference-center-confirmed';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What a preference form asked to undo and what became of the confirmation mail. */
export interface ResubscribeRequest {
  everything: boolean;
  topics: string[];
  /** It also asked to allow tracking again (a refusal the link may clear: tracking-preference.ts refusalsToAllow). */
  tracking: boolean;
  /** `mailed`: sent now; `recently_mailed`: the address's daily limit was reached (the earlier mails' links work); `mail_unavailable`: the mail could not be sent. */
  outcome: 'mailed' | 'recently_mailed' | 'mail_unavailable';
}

/** The confirmation page: what its button would undo (what is still there of what the token names). */
export interface ResubscribeView extends RecipientView {
  everything: boolean;
  topics: string[];
  /** A named tracking refusal is still set: the button would clear it. */
  tracking: boolean;
  /** Some of it is held now by the sender's reason (or a bounce): the button would be refused. */
  lockedByOthers: boolean;
  /** The recipient's preference-center token, for the page's link back. */
  preferencesToken: string;
}

const whatOf = (rows: SuppressionRow[]) => ({
  everything: rows.some((row) => row.scope === ALL),
  topics: rows.map((row) => topicOf(row.scope)).filter((topic): topic is string => topic !== undefined),
});

/** A name quoted in the mail's plain text: on one line, whatever it contains. */
const quoted = (name: string) => `"${name.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim()}"`;

export function createResubscribeConfirmation(deps: {
  repo: SuppressionListRepo;
  codec: TokenCodec;
  jwt: Config['jwt'];
  mailer: AccountMailer;
  throttle: Pick<AuthThrottle, 'mayMailResubscribe'>;
  publicBaseUrl: string;
  policyVersion: string;
}) {
  const { repo, codec, mailer, throttle, policyVersion } = deps;
  const tokens = createSignedTokens(deps.jwt, { audience: 'inboxtrail-resubscribe', ttlSeconds: RESUBSCRIBE_TTL_SECONDS });
  const baseUrl = deps.publicBaseUrl.replace(/\/+$/, '');

  function mailText(target: TokenTarget, rows: SuppressionRow[], tracking: boolean, url: string): string {
    const what = whatOf(rows);
    const lines = [
      ...(what.everything ? [`- all email from ${quoted(target.workspaceName)} (you had unsubscribed from everything)`] : []),
      ...what.topics.map((topic) => `- the topic ${quoted(topic)}`),
      ...(tracking ? [`- ${quoted(target.workspaceName)} seeing when you open its email and click its links (you had chosen "Don't track my opens and clicks")`] : []),
    ];
    const asked = [
      ...(rows.length > 0 ? [`to receive email from ${quoted(target.workspaceName)} again at this address`] : []),
      ...(tracking ? [`to let ${quoted(target.workspaceName)} see again when this address opens its email and clicks its links`] : []),
    ].join(', and ');
    return [
      `Someone asked ${asked}, on the email preferences page linked in their mail:`,
      '',
      ...lines,
      '',
      'If that was you, open this link within 24 hours and press the button on its page:',
      '',
      url,
      '',
      `Nothing changes until you press the button. If it was not you, or you changed your mind, ignore this mail: ${[...(rows.length > 0 ? ['you stay unsubscribed'] : []), ...(tracking ? ['your opens and clicks stay untracked'] : [])].join(', and ')}.`,
      '',
      `This mail was sent by inboxtrail, the service ${quoted(target.workspaceName)} sends its email with, only because of that request. It has no tracking.`,
    ].join('\n');
  }

  /** The token's claims, or link_not_found (forged, truncated, another purpose's) / confirmation_expired. */
  function readToken(token: string): { recipientId: string; campaignId?: string; entryIds: string[]; refusals: { contactId: string; refusedAtMs: number }[] } {
    let payload;
    try {
      payload = tokens.verify(token);
    } catch (error) {
      if (isExpiredTokenError(error)) {
        throw new AppError('confirmation_expired', 410, 'This confirmation link has expired (it works for 24 hours). Nothing was changed. To receive email again, ask again on the email preferences page.');
      }
      throw linkNotFound();
    }
    const entryIds: unknown = payload.e;
    const campaignId: unknown = payload.c;
    // `t` ([contact id, refusal time in ms] pairs) is absent from links mailed before it existed.
    const refusals: unknown = payload.t ?? [];
    const isRefusal = (r: unknown) => Array.isArray(r) && r.length === 2 && typeof r[0] === 'string' && UUID.test(r[0]) && Number.isSafeInteger(r[1]) && (r[1] as number) > 0;
    if (!UUID.test(payload.sub!) || !Array.isArray(entryIds) || entryIds.some((id) => typeof id !== 'string' || !UUID.test(id))) throw linkNotFound();
    if (!Array.isArray(refusals) || refusals.length > MAX_ENTRIES_PER_CONFIRMATION || !refusals.every(isRefusal) || entryIds.length + refusals.length === 0) throw linkNotFound();
    if (campaignId !== undefined && (typeof campaignId !== 'string' || !UUID.test(campaignId))) throw linkNotFound();
    return {
      recipientId: payload.sub!,
      entryIds: entryIds as string[],
      refusals: (refusals as [string, number][]).map(([contactId, refusedAtMs]) => ({ contactId, refusedAtMs })),
      ...(campaignId ? { campaignId } : {}),
    };
  }

  /** Of the entries the token names, those still on the list for this recipient's address (matched by address or its hash). */
  async function stillListed(q: SuppressionListQueries, target: TokenTarget, entryIds: string[]): Promise<SuppressionRow[]> {
    const named = new Set(entryIds);
    return (await q.listEntriesOfAddress(target.workspaceId, target.email)).filter((row) => named.has(row.id));
  }

  async function resolve(q: SuppressionListQueries, token: string) {
    const claims = readToken(token);
    const target = await resolveRecipient(q, claims.recipientId, claims.campaignId);
    return { target, rows: await stillListed(q, target, claims.entryIds), refusals: claims.refusals };
  }

  const preferencesTokenOf = (target: TokenTarget) => codec.encode({ kind: 'unsubscribe', recipientId: target.recipientId, campaignId: target.campaignId });

  return {
    /**
     * After the preference form's transaction committed: mails the address one link that undoes
     * these entries (the recipient's own, checked by the caller) and clears these tracking
     * refusals (refusalsToAllow). Counted against the address's daily limit (throttle.ts
     * mayMailResubscribe); a mail that could not be sent is not counted.
     */
    async requestConfirmation(target: TokenTarget, rows: SuppressionRow[], refusals: TrackingRefusal[] = []): Promise<ResubscribeRequest> {
      const what = { ...whatOf(rows), tracking: refusals.length > 0 };
      const quota = await throttle.mayMailResubscribe(target.email);
      if (!quota.allowed) return { ...what, outcome: 'recently_mailed' };
      const claims = {
        e: rows.map((row) => row.id),
        ...(refusals.length > 0 ? { t: refusals.map((r) => [r.contactId, r.refusedAt.getTime()]) } : {}),
        ...(target.campaignId ? { c: target.campaignId } : {}),
      };
      const token = tokens.sign(claims, target.recipientId);
      const subject = rows.length > 0 ? RESUBSCRIBE_MAIL_SUBJECT : TRACKING_MAIL_SUBJECT;
      try {
        await mailer.send({ to: target.email, subject, text: mailText(target, rows, what.tracking, `${baseUrl}/p/confirm/${token}`) });
      } catch {
        // The mailer logged why (without the address); the opt-outs stay as they are.
        await quota.undo();
        return { ...what, outcome: 'mail_unavailable' };
      }
      return { ...what, outcome: 'mailed' };
    },

    /** The confirmation page. Reads only: mail scanners prefetch the link. */
    async confirmationPage(token: string): Promise<ResubscribeView> {
      const { target, rows, refusals } = await resolve(repo, token);
      return {
        ...viewOf(target),
        ...whatOf(rows),
        tracking: (await refusalsStillSet(repo, target, refusals)).length > 0,
        lockedByOthers: rows.some((row) => !recipientMayRemove(row)),
        preferencesToken: preferencesTokenOf(target),
      };
    },

    /**
     * The page's button: removes exactly the entries the token names that are still there, by the
     * preference center's rules (only the recipient's own entries that no user's reason holds; all
     * or nothing), audited, and — when `all` goes — an `opted_in` consent (source
     * `preference-center-confirmed`); and clears the named tracking refusals still set as they
     * were, under the preference center's locks (movedContacts), audited `tracking.allowed`.
     * Again: nothing left, nothing changes.
     */
    async confirm(token: string): Promise<ResubscribeView & { changed: number }> {
      return againAfterConcurrencyFailure(() =>
        repo.transaction(async (tx) => {
          // Under the address's opt-out lock (re-allowing tracking: also the contacts a tracking
          // choice locks, movedContacts), then read again, as every removal: a one-click opt-out at
          // the same moment either committed first (its entry is not one this token names, and
          // stays) or waits and then finds no entry and makes its own — seen without the lock as
          // "already opted out", it would have been lost (a reviewer's finding).
          // movedContacts always: with the address it locks the contacts the consent record reaches
          // (and their unsent sends' addresses) in one key order — the address alone first, the
          // consent's own locks after, could deadlock with a claim or a move taking both (a reviewer's finding).
          const first = await resolve(tx, token);
          await movedContacts(tx, first.target);
          const { target, rows, refusals } = await resolve(tx, token);
          const removed: SuppressionRow[] = [];
          for (const row of rows) {
            if (!recipientMayRemove(row)) throw refuseResubscribe(target.workspaceName);
            // Only as it was read: a user's reason added since holds it (holdEntry). Gone since (the
            // same button pressed twice at once): nothing left to do for it.
            if (!(await tx.deleteEntry(target.workspaceId, row.id, { unheldOf: RECIPIENT_REMOVABLE }))) {
              if (await tx.findEntryById(target.workspaceId, row.id)) throw refuseResubscribe(target.workspaceName);
              continue;
            }
            removed.push(row);
            await auditRecipientChange(tx, target, 'suppression.removed', row, { entry: entryDetail(row), via: CONFIRMED_SOURCE });
          }
          if (removed.some((row) => row.scope === ALL)) {
            await recordConsent(tx, policyVersion, {
              workspaceId: target.workspaceId,
              email: target.email,
              status: 'opted_in',
              source: CONFIRMED_SOURCE,
              actor: RECIPIENT_ACTOR,
              auditActor: `recipient:${target.recipientId}`,
            });
          }
          const allowed = await allowTracking(tx, target, await refusalsStillSet(tx, target, refusals), CONFIRMED_SOURCE);
          return {
            ...viewOf(target),
            ...whatOf(removed),
            tracking: allowed > 0,
            lockedByOthers: false,
            preferencesToken: preferencesTokenOf(target),
            changed: removed.length + allowed,
          };
        }),
      );
    },
  };
}

export type ResubscribeConfirmation = ReturnType<typeof createResubscribeConfirmation>;
