/*
 * What sync did with each message it read, counted per mailbox so that silent loss is
 * visible (GET /api/mailboxes → sync.health). Stored flat in mailboxes.sync_health (jsonb);
 * each sync pass adds its counts in one atomic update.
 */
import type { SyncGap } from '../db/schema.js';

/** Why a message read from Gmail was not kept or not turned into a signal. */
export type SkipReason =
  /** Draft, spam or chat: not mail that happened. */
  | 'ignoredLabel'
  /** A message we sent ourselves (the send ledger has it). */
  | 'ownSend'
  /** No CRM contact in it and not about a message of ours. */
  | 'notContact'
  /** Looked like a bounce notice, but the reader found no failed recipient in it. */
  | 'unparsedNotice'
  /** A bounce notice about no send of ours from this mailbox. */
  | 'unmatchedNotice'
  /** A bounce notice naming an address this mailbox never sent to (forged or misrouted): it suppresses nothing. */
  | 'recipientNotSent'
  /** A bounce notice that names no message of ours, from no mail system that may report on its addresses (signals.ts mayReportOn): it suppresses nothing. */
  | 'unverifiedNotice'
  /** Deleted between listing and reading. */
  | 'gone'
  /** Holds text the database cannot store whatever the retry (sync-pass.ts): skipped so that the mail after it is read. */
  | 'unstorable';

export type SignalKind = 'reply' | 'autoReply' | 'bounce' | 'delay';

/** Resyncs that found more mail since the last sync than they read (GMAIL_RESYNC_MAX_MESSAGES). */
type GapCount = 'resyncGaps';

export const SKIP_REASONS: readonly SkipReason[] = ['ignoredLabel', 'ownSend', 'notContact', 'unparsedNotice', 'unmatchedNotice', 'recipientNotSent', 'unverifiedNotice', 'gone', 'unstorable'];
export const SIGNAL_KINDS: readonly SignalKind[] = ['reply', 'autoReply', 'bounce', 'delay'];

/** One pass's counts: `read` messages fetched, `kept` stored, signals recorded, skips by reason. */
export type SyncHealthCounts = Record<'read' | 'kept' | SkipReason | SignalKind | GapCount, number>;

export function emptyHealth(): SyncHealthCounts {
  return Object.fromEntries(['read', 'kept', 'resyncGaps', ...SKIP_REASONS, ...SIGNAL_KINDS].map((k) => [k, 0])) as SyncHealthCounts;
}

/** Adds a message's (or a run's) counts to `target`. */
export function addHealth(target: SyncHealthCounts, counts: Partial<SyncHealthCounts>): void {
  for (const [key, n] of Object.entries(counts) as [keyof SyncHealthCounts, number][]) target[key] += n;
}

/** A resync's gap as the pass's `lastError` says it (the mailbox keeps the gap itself in `lastSyncGap`). */
export function describeSyncGap(gap: SyncGap): string {
  return `gap: more than ${gap.read} messages arrived since the last sync on ${gap.since.slice(0, 10)}; the newest ${gap.read} were read, older ones were not`;
}

/** The API's view of the stored counters. */
export function presentHealth(stored: Record<string, number> | null | undefined) {
  const n = (key: string) => Number(stored?.[key] ?? 0);
  return {
    read: n('read'),
    kept: n('kept'),
    resyncGaps: n('resyncGaps'),
    signals: Object.fromEntries(SIGNAL_KINDS.map((k) => [k, n(k)])) as Record<SignalKind, number>,
    skipped: Object.fromEntries(SKIP_REASONS.map((k) => [k, n(k)])) as Record<SkipReason, number>,
  };
}
