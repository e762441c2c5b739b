import { ValidationError } from '../errors.js';
import type { SuppressionListQueries } from './suppression.repo.js';

/*
 * "Don't track my opens and clicks" (Soffront: recipients may restrict collection). The
 * choice is kept on the workspace's live contact with the address, and a refusal also on the
 * contacts the link's mail was sent for when their address changed since
 * (`contacts.tracking_refused_at`; contactsOf below), so it holds for every campaign of that workspace: their mail goes out with no pixel and no
 * rewritten links (campaigns/campaign-mail.ts), and a hit from older mail is kept only as a
 * count (tracking/untracked-hits.ts). An address that is no contact has nowhere to keep it,
 * so the preference center offers it only to contacts.
 *
 * It is audited like every preference change, but it is not a consent record: consent
 * history is about receiving marketing mail (latest record wins), and refusing tracking must
 * not change that.
 */

export const TRACKING_CHOICES = ['allow', 'refuse'] as const;
export type TrackingChoice = (typeof TRACKING_CHOICES)[number];

/** What the preference center shows: undefined when the address is no contact (nothing to keep the choice on). */
export interface TrackingView {
  refused: boolean;
}

/** Whose choice it is: the recipient of the link, and the campaign it came with, if any. */
export interface TrackingTarget {
  workspaceId: string;
  email: string;
  recipientId: string;
  campaignId?: string;
}

/**
 * The contacts a refusal is kept on: the live contact with the address, and the contacts whose
 * campaign mail went to it before their address changed (the opt-out's rule,
 * suppression.service.ts movedContacts) — the person who follows the link may be theirs.
 * Allowing again is the other direction: it reaches only the contact at the link's address. A
 * moved contact's refusal is never undone through a link that now reaches someone else (links
 * are forwarded; the address may be another person's since).
 */
async function contactsOf(q: SuppressionListQueries, target: TrackingTarget) {
  const moved = await q.findContactsMovedFromRecipient(target.workspaceId, target.recipientId, target.campaignId);
  const found = await q.findContactsTracking(target.workspaceId, target.email, moved);
  const movedIds = new Set(moved);
  return found.map((contact) => ({ ...contact, moved: movedIds.has(contact.id) }));
}

/** Refused when any of those contacts refused: a refusal is never shown as an allowance. */
export async function trackingViewOf(q: SuppressionListQueries, target: TrackingTarget): Promise<TrackingView | undefined> {
  const found = await contactsOf(q, target);
  return found.length > 0 ? { refused: found.some((contact) => contact.trackingRefusedAt !== null) } : undefined;
}

/** Applies the choice inside the preference center's transaction; returns how many contacts it changed. */
export async function applyTrackingChoice(q: SuppressionListQueries, target: TrackingTarget, choice: TrackingChoice, now: Date): Promise<number> {
  const found = await contactsOf(q, target);
  if (found.length === 0) throw new ValidationError([{ field: 'tracking', message: 'is not offered for this address' }]);
  const refuse = choice === 'refuse';
  let changed = 0;
  for (const contact of found) {
    if (refuse === (contact.trackingRefusedAt !== null) || (!refuse && contact.moved)) continue;
    await q.setContactTrackingRefused(target.workspaceId, contact.id, refuse ? now : null);
    await q.insertAudit({
      workspaceId: target.workspaceId,
      actor: `recipient:${target.recipientId}`,
      action: refuse ? 'tracking.refused' : 'tracking.allowed',
      subjectType: 'contact',
      subjectId: contact.id,
      detail: { via: 'preference-center' },
    });
    changed += 1;
  }
  return changed;
}
