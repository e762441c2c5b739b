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
 * sides of each click (the recent clicks of each send are kept in a bounded map); their
 * verdict and row are then made at flush time too, off the request path.
 */

export interface RawHit {
  atMs: number;
  method: string;
  ip?: string;
  userAgent?: string;
}

/**
 * What the writer buffers: raw facts; verdicts and rows are made at flush time, off the
 * request path. The event id is chosen here, when the hit is buffered: a batch retried
 * after a lost acknowledgement carries the same ids, and the insert skips what landed.
 */
export type QueuedHit =
  | { kind: 'open'; id: string; sendId: string; hit: RawHit }
  | { kind: 'click'; id: string; send: ResolvedSend; linkIndex: number; honeypot: boolean; linkBurst: boolean; hit: RawHit };

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
  /** Per send, per content link: the times of its last few clicks (honeypot hits are not kept). */
  const recentClicks = new TtlLru<string, Map<number, number[]>>(50_000, 10 * BURST_WINDOW_MS, now);
  const PER_LINK = 8;
  let held: HeldClick[] = [];
  let heldHead = 0;

  const rowOf = (id: string, send: ResolvedSend, type: 'open' | 'click', linkIndex: number | null, hit: RawHit, verdict: { classification: TrackingEventRow['classification']; reasons: string[] }): TrackingEventRow => ({
    id,
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

  /** Cheap first: fewer distinct links ever clicked than needed (the usual case) is no burst. */
  const burstAround = (recent: Map<number, number[]> | undefined, atMs: number, required: number) => {
    if (!recent || recent.size < required) return false;
    const hits: { linkIndex: number; atMs: number }[] = [];
    for (const [linkIndex, times] of recent) for (const t of times) hits.push({ linkIndex, atMs: t });
    return inLinkBurst(hits, atMs, required);
  };

  const release = (click: HeldClick) => {
    const { send, linkIndex, honeypot, hit } = click;
    const required = burstThreshold(send.links.contentLinkCount);
    // Only the burst needs the neighbours (known now); the verdict and the row are made at flush time.
    const linkBurst =
      !honeypot && required !== undefined && burstAround(recentClicks.get(send.sendId), hit.atMs, required);
    push({ kind: 'click', id: newId(), send, linkIndex, honeypot, linkBurst, hit });
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
      push({ kind: 'open', id: newId(), sendId, hit });
    },

    click(send: ResolvedSend, linkIndex: number, hit: RawHit): void {
      const honeypot = send.links.byIndex.get(linkIndex)?.honeypot ?? false;
      if (!honeypot) {
        let recent = recentClicks.get(send.sendId);
        if (!recent) {
          recent = new Map();
          recentClicks.set(send.sendId, recent);
        }
        const times = recent.get(linkIndex);
        if (!times) recent.set(linkIndex, [hit.atMs]);
        else {
          // A link clicked over and over keeps only its last few times: constant cost per click.
          times.push(hit.atMs);
          if (times.length > PER_LINK) times.shift();
        }
      }
      held.push({ send, linkIndex, honeypot, hit });
    },

    /** The writer's prepare step: resolves queued opens (one query for the batch's unknown sends) and classifies them. */
    async prepare(items: QueuedHit[]): Promise<TrackingEventRow[]> {
      const unknown = new Set<string>();
      for (const item of items) if (item.kind === 'open' && cache.peek(item.sendId) === undefined) unknown.add(item.sendId);
      if (unknown.size > 0) await cache.loadMany(unknown);
      const rows: TrackingEventRow[] = [];
      for (const item of items) {
        if (item.kind === 'click') {
          const { send, hit } = item;
          const verdict = classify({ type: 'click', method: hit.method, atMs: hit.atMs, ip: hit.ip, userAgent: hit.userAgent, sentAtMs: send.sentAtMs, honeypot: item.honeypot, linkBurst: item.linkBurst });
          rows.push(rowOf(item.id, send, 'click', item.linkIndex, hit, verdict));
          continue;
        }
        const send = cache.peek(item.sendId);
        if (!send) {
          options.onUnresolved?.('open');
          continue;
        }
        const { hit } = item;
        const verdict = classify({ type: 'open', method: hit.method, atMs: hit.atMs, ip: hit.ip, userAgent: hit.userAgent, sentAtMs: send.sentAtMs });
        rows.push(rowOf(item.id, send, 'open', null, hit, verdict));
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
