import type { SuppressionReason } from './suppression.repo.js';
import type { TrackingChoice, TrackingView } from './tracking-preference.js';

/*
 * What the recipient's pages (unsubscribe.pages.ts) are given and send back: the preference
 * center's choices and the views of the recipient, which never show the full address.
 */

export const PREFERENCE_ACTIONS = ['save', 'unsubscribe-all', 'resubscribe-all'] as const;
export type PreferenceAction = (typeof PREFERENCE_ACTIONS)[number];

export interface PreferenceChoices {
  action: PreferenceAction;
  /** The topics the submitted form showed: only these are changed. */
  topics: string[];
  /** Among `topics`, those the recipient keeps (the rest are opted out of). */
  subscribed: string[];
  /** "Don't track my opens and clicks" (tracking-preference.ts); absent: unchanged. */
  tracking?: TrackingChoice;
}

/** The recipient as the pages show them: never the full address (a forwarded mail should not reveal it). */
export interface RecipientView {
  workspaceName: string;
  maskedEmail: string;
}

export interface PreferencesView extends RecipientView {
  /** `own`: the recipient's own opt-out is recorded (an entry a user or a bounce made may stop the mail without it). */
  everything: { suppressed: boolean; own: boolean; reason?: SuppressionReason; lockedByOthers: boolean };
  topics: { name: string; subscribed: boolean; lockedByOthers: boolean; reason?: SuppressionReason }[];
  tracking?: TrackingView;
}

/** `alice@example.com` → `a•••@example.com`: enough for the person to recognise, little for anyone else. */
export function maskEmailAddress(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) return '•••';
  return `${email.slice(0, 1)}•••${email.slice(at)}`;
}
