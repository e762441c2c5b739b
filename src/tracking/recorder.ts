import { randomUUID } from 'node:crypto';
import { BURST_WINDOW_MS, burstThreshold, inLinkBurst, type Classify } from './classify.js';
import { TtlLru } from './lru.js';
import type { ResolvedSend, SendCache } from './send-cache.js';
import type { TrackingEventRow } from './tracking.repo.js';

/*
 * Between the HTTP handler and the event writer. Opens are queued raw and resolved +
 * classified at flush time, in batches (an open never waits for the database). Clicks
 * arrive resolved (the redirect needed the link) and are held for one burst window, so
 * that "every link of the message within a second" can be judged with the hits on both
 * sides of each click; the recent clicks of each send are kept in a bounded map.
 */

export interface RawHit {
  atMs: number;
  method: string;
  ip?: string;
  userAgent?: string;
}

export type QueuedHit = { kind: 'open'; sendId: string; hit: RawHit } | { kind: 'row'; row: TrackingEventRow };

interface HeldClick {
  send: ResolvedSend;
  linkIndex: number;
  honeypot: boolean;
  hit: RawHit;
}

/** Stored user agents are capped: enough to classify and audit, not a place for junk. */
const MAX_USER_AGENT = 512;

export interface RecorderOptions {
  cache: SendCache;
  classify: Classify;
  push: (item: QueuedHit) => void;
  /** A valid token whose send no longer exists (deleted campaign): dropped and counted. */
  onUnresolved?: (type: 'open' | 'click') => void;
  holdMs?: number;
  now?: () => number;
  newId?: () => string;
}

export function createRecorder(options: RecorderOptions) {
  const { cache, classify, push } = options;
  const now = options.now ?? Date.now;
  const newId = options.newId ?? randomUUID;
  const holdMs = options.holdMs ?? BURST_WINDOW_MS;
  const recentClicks = new TtlLru<string, { linkIndex: number; atMs: number }[]>(50_000, 10 * BURST_WINDOW_MS, now);
  let held: HeldClick[] = [];
  let heldHead = 0;

  const rowOf = (send: ResolvedSend, type: 'open' | 'click', linkIndex: number | null, hit: RawHit, verdict: { classification: TrackingEventRow['classification']; reasons: string[] }): TrackingEventRow => ({
    id: newId(),
    workspaceId: send.workspaceId,
    campaignId: send.campaignId,
    sendId: send.sendId,
    type,
    linkIndex,
    atMs: hit.atMs,
    method: hit.method,
    ip: hit.ip ?? null,
    userAgent: hit.userAgent ? hit.userAgent.slice(0, MAX_USER_AGENT) : null,
    classification: verdict.classification,
    reasons: verdict.reasons,
  });

  const release = (click: HeldClick) => {
    const { send, linkIndex, honeypot, hit } = click;
    const required = burstThreshold(send.links.contentLinkCount);
    let linkBurst = false;
    if (!honeypot && required !== undefined) {
      const hits = (recentClicks.get(send.sendId) ?? []).filter((h) => !send.links.byIndex.get(h.linkIndex)?.honeypot);
      linkBurst = inLinkBurst(hits, hit.atMs, required);
    }
    const verdict = classify({ type: 'click', method: hit.method, atMs: hit.atMs, ip: hit.ip, userAgent: hit.userAgent, sentAtMs: send.sentAtMs, honeypot, linkBurst });
    push({ kind: 'row', row: rowOf(send, 'click', linkIndex, hit, verdict) });
  };

  const releaseHeld = (all: boolean) => {
    const due = now() - holdMs;
    while (heldHead < held.length && (all || held[heldHead]!.hit.atMs <= due)) {
      const click = held[heldHead]!;
      heldHead += 1;
      release(click);
    }
    if (heldHead === held.length) {
      held = [];
      heldHead = 0;
    } else if (heldHead > 4096) {
      held = held.slice(heldHead);
      heldHead = 0;
    }
  };

  const timer = setInterval(() => releaseHeld(false), Math.max(50, Math.floor(holdMs / 4)));
  timer.unref();

  return {
    open(sendId: string, hit: RawHit): void {
      push({ kind: 'open', sendId, hit });
    },

    click(send: ResolvedSend, linkIndex: number, hit: RawHit): void {
      const recent = recentClicks.get(send.sendId) ?? [];
      recent.push({ linkIndex, atMs: hit.atMs });
      // Only neighbours within a few windows matter (a held click looks one window back); a few dozen at most are kept.
      const horizon = hit.atMs - 3 * BURST_WINDOW_MS;
      const kept = recent.length > 64 || (recent[0] && recent[0].atMs < horizon) ? recent.filter((h) => h.atMs >= horizon).slice(-64) : recent;
      recentClicks.set(send.sendId, kept);
      held.push({ send, linkIndex, honeypot: send.links.byIndex.get(linkIndex)?.honeypot ?? false, hit });
    },

    /** The writer's prepare step: resolves queued opens (one query for the batch's unknown sends) and classifies them. */
    async prepare(items: QueuedHit[]): Promise<TrackingEventRow[]> {
      const unknown = new Set<string>();
      for (const item of items) if (item.kind === 'open' && cache.peek(item.sendId) === undefined) unknown.add(item.sendId);
      if (unknown.size > 0) await cache.loadMany(unknown);
      const rows: TrackingEventRow[] = [];
      for (const item of items) {
        if (item.kind === 'row') {
          rows.push(item.row);
          continue;
        }
        const send = cache.peek(item.sendId);
        if (!send) {
          options.onUnresolved?.('open');
          continue;
        }
        const { hit } = item;
        const verdict = classify({ type: 'open', method: hit.method, atMs: hit.atMs, ip: hit.ip, userAgent: hit.userAgent, sentAtMs: send.sentAtMs });
        rows.push(rowOf(send, 'open', null, hit, verdict));
      }
      return rows;
    },

    /** Clicks waiting out their burst window. */
    get held(): number {
      return held.length - heldHead;
    },

    /** Classifies every held click now, with what is known so far (tests, shutdown). */
    releaseAll(): void {
      releaseHeld(true);
    },

    close(): void {
      clearInterval(timer);
      releaseHeld(true);
    },
  };
}

export type Recorder = ReturnType<typeof createRecorder>;
