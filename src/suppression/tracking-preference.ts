import { ValidationError } from '../errors.js';
import type { SuppressionListQueries } from './suppression.repo.js';

/*
 * "Don't track my opens and clicks" (Soffront: recipients may restrict collection). The
 * choice is kept on the workspace's live contact with the address, and a refusal also on the
 * contacts the link's mail was sent for when their address changed since
 * (`contacts.tracking_refused_at`; contactsOf below), so it holds for every campaign of that workspace: their mail goes out with no pixel and no
 * rewritten links (campaigns/campaign-mail.ts), and a hit from older mail is kept only as a
 * count (tracking/untracked-hits.ts). An address that is no contact has nowhere to keep it,
 * so the preference center offers it only to contacts. A refusal applies at once; allowing
 * again takes the address's confirmation, mailed like undoing an opt-out (resubscribe.service.ts):
 * a link from the mail is no proof of who holds it.
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
 * Allowing again is the other direction: it reaches only the contact at the link's address, and
 * only once the address confirmed it (refusalsToAllow). A moved contact's refusal is never undone
 * through a link that now reaches someone else (links are forwarded; the address may be another
 * person's since).
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

/** A refusal an allowance would clear: the contact and when it refused (so a later refusal is another one). */
export interface TrackingRefusal {
  contactId: string;
  refusedAt: Date;
}

/**
 * The refusals allowing tracking through this link may clear (inside the caller's transaction,
 * under the preference center's locks): those of the contact at the link's address, never a
 * moved contact's. Allowing is not applied by the form: it is mailed to the address to confirm
 * (resubscribe.service.ts), like undoing an opt-out. 400 where there is no contact to keep a
 * choice on.
 */
export async function refusalsToAllow(q: SuppressionListQueries, target: TrackingTarget): Promise<TrackingRefusal[]> {
  const found = await contactsOf(q, target);
  if (found.length === 0) throw new ValidationError([{ field: 'tracking', message: 'is not offered for this address' }]);
  return found.filter((contact) => !contact.moved && contact.trackingRefusedAt !== null).map((contact) => ({ contactId: contact.id, refusedAt: contact.trackingRefusedAt! }));
}

/**
 * Of the refusals a confirmation names, those still there as they were (the same contact, still
 * at the link's address, the same refusal): a refusal cleared since, or made again, is not
 * this one.
 */
export async function refusalsStillSet(q: SuppressionListQueries, target: TrackingTarget, named: readonly { contactId: string; refusedAtMs: number }[]): Promise<string[]> {
  if (named.length === 0) return [];
  const current = await contactsOf(q, target);
  return current
    .filter((contact) => !contact.moved && named.some((n) => n.contactId === contact.id && n.refusedAtMs === contact.trackingRefusedAt?.getTime()))
    .map((contact) => contact.id);
}

async function auditTracking(q: SuppressionListQueries, target: TrackingTarget, contactId: string, action: 'tracking.refused' | 'tracking.allowed', via: string) {
  await q.insertAudit({ workspaceId: target.workspaceId, actor: `recipient:${target.recipientId}`, action, subjectType: 'contact', subjectId: contactId, detail: { via } });
}

/** A refusal, applied at once inside the preference center's transaction; returns how many contacts it changed. */
export async function refuseTracking(q: SuppressionListQueries, target: TrackingTarget, now: Date): Promise<number> {
  const found = await contactsOf(q, target);
  if (found.length === 0) throw new ValidationError([{ field: 'tracking', message: 'is not offered for this address' }]);
  let changed = 0;
  for (const contact of found) {
    if (contact.trackingRefusedAt !== null) continue;
    await q.setContactTrackingRefused(target.workspaceId, contact.id, now);
    await auditTracking(q, target, contact.id, 'tracking.refused', 'preference-center');
    changed += 1;
  }
  return changed;
}

/** Clears these contacts' refusals (refusalsStillSet, under the caller's locks), audited `tracking.allowed` with `via`. */
export async function allowTracking(q: SuppressionListQueries, target: TrackingTarget, contactIds: readonly string[], via: string): Promise<number> {
  for (const contactId of contactIds) {
    await q.setContactTrackingRefused(target.workspaceId, contactId, null);
    await auditTracking(q, target, contactId, 'tracking.allowed', via);
  }
  return contactIds.length;
}
