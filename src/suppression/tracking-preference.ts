import { ValidationError } from '../errors.js';
import type { SuppressionListQueries } from './suppression.repo.js';

/*
 * "Don't track my opens and clicks" (Soffront: recipients may restrict collection). The
 * choice is kept on the workspace's contact with the address (`contacts.tracking_refused_at`),
 * so it holds for every campaign of that workspace: their mail goes out with no pixel and no
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

export async function trackingViewOf(q: SuppressionListQueries, workspaceId: string, email: string): Promise<TrackingView | undefined> {
  const contact = await q.findContactTracking(workspaceId, email);
  return contact ? { refused: contact.trackingRefusedAt !== null } : undefined;
}

/** Applies the choice inside the preference center's transaction; returns 1 when it changed something. */
export async function applyTrackingChoice(
  q: SuppressionListQueries,
  target: { workspaceId: string; email: string; recipientId: string },
  choice: TrackingChoice,
  now: Date,
): Promise<number> {
  const contact = await q.findContactTracking(target.workspaceId, target.email);
  if (!contact) throw new ValidationError([{ field: 'tracking', message: 'is not offered for this address' }]);
  const refuse = choice === 'refuse';
  if (refuse === (contact.trackingRefusedAt !== null)) return 0;
  await q.setContactTrackingRefused(target.workspaceId, contact.id, refuse ? now : null);
  await q.insertAudit({
    workspaceId: target.workspaceId,
    actor: `recipient:${target.recipientId}`,
    action: refuse ? 'tracking.refused' : 'tracking.allowed',
    subjectType: 'contact',
    subjectId: contact.id,
    detail: { via: 'preference-center' },
  });
  return 1;
}
