import { randomUUID } from 'node:crypto';
import { BURST_WINDOW_MS, burstThreshold, inLinkBurst, type Classify } from './classify.js';
import { HitColumns, type HitBatch } from './hit-columns.js';
import { TtlLru } from './lru.js';
import type { ResolvedSend, SendCache } from './send-cache.js';
import { emptyEventColumns, type EventColumns } from './event-columns.js';

/*
 * Between the HTTP handler and the event writer. Opens are queued raw and resolved +
 * classified at flush time, in batches (an open never waits for the database). Clicks
 * arrive resolved (the redirect needed the link) and are held for one burst window, so
 * that "every link of the message within a second" can be judged with the hits on both
 * sides of each click (the recent clicks of each send are kept in a bounded map); their
 * verdict and event are then made at flush time too, off the request path.
 */

export interface RawHit {
  atMs: number;
  method: string;
  ip?: string;
  userAgent?: string;
  /** The client said it fetched ahead of a person (tracking-handler.ts isPrefetch). */
  prefetch?: boolean;
}

/**
 * What the writer buffers: raw facts; verdicts and events are made at flush time, off the
 * request path. The event id is chosen when the batch is first prepared and kept on the
 * batch: a batch retried after a lost acknowledgement is the same hits with the same ids,
 * and the insert skips what landed.
 */
export type QueuedHit =
  | { kind: 'open'; id?: string; sendId: string; hit: RawHit }
  | { kind: 'click'; id?: string; send: ResolvedSend; linkIndex: number; honeypot: boolean; linkBurst: boolean; hit: RawHit };

type QueuedClick = Extract<QueuedHit, { kind: 'click' }>;

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
  /** Clicks waiting out their burst window, by column (hit-columns.ts: thousands a second live ~1 s). */
  const held = new HitColumns();

  /** Cheap first: fewer distinct links ever clicked than needed (the usual case) is no burst. */
  const burstAround = (recent: Map<number, number[]> | undefined, atMs: number, required: number) => {
    if (!recent || recent.size < required) return false;
    const hits: { linkIndex: number; atMs: number }[] = [];
    for (const [linkIndex, times] of recent) for (const t of times) hits.push({ linkIndex, atMs: t });
    return inLinkBurst(hits, atMs, required);
  };

  const release = (click: QueuedClick) => {
    const { send, honeypot, hit } = click;
    const required = burstThreshold(send.links.contentLinkCount);
    // Only the burst needs the neighbours (known now); the verdict and the row are made at flush time.
    click.linkBurst = !honeypot && required !== undefined && burstAround(recentClicks.get(send.sendId), hit.atMs, required);
    push(click);
  };

  const releaseHeld = (all: boolean) => {
    const due = now() - holdMs;
    while (held.length > 0 && (all || held.headAtMs()! <= due)) release(held.shift() as QueuedClick);
  };

  const timer = setInterval(() => releaseHeld(false), Math.max(50, Math.floor(holdMs / 4)));
  timer.unref();

  return {
    open(sendId: string, hit: RawHit): void {
      push({ kind: 'open', sendId, hit });
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
      held.push({ kind: 'click', send, linkIndex, honeypot, linkBurst: false, hit });
    },

    /**
     * The writer's prepare step: resolves the batch's opens (one query for the sends not
     * cached) and classifies every hit, into events by column. Only the batch's columns are
     * read and only the events' columns are made: no object per hit (hit-columns.ts says why).
     */
    async prepare(batch: HitBatch): Promise<EventColumns> {
      const { columns } = batch;
      let unknown: Set<string> | undefined;
      for (let at = 0; at < batch.length; at += 1) {
        if (batch.isClick(at)) continue;
        const sendId = batch.sendIdAt(at);
        if (cache.peek(sendId) === undefined) (unknown ??= new Set()).add(sendId);
      }
      if (unknown) await cache.loadMany(unknown);
      const events = emptyEventColumns();
      for (let at = 0; at < batch.length; at += 1) {
        const click = batch.isClick(at);
        const send = click ? batch.sendAt(at) : cache.peek(batch.sendIdAt(at));
        if (!send) {
          if (batch.firstUnresolved(at)) options.onUnresolved?.('open');
          continue;
        }
        const method = columns.method[at]!;
        const atMs = columns.atMs[at]!;
        const ip = columns.ip[at];
        const userAgent = columns.userAgent[at];
        const verdict = click
          ? classify({ type: 'click', method, atMs, ip, userAgent, sentAtMs: send.sentAtMs, prefetch: batch.isPrefetch(at), honeypot: batch.isHoneypot(at), linkBurst: batch.isLinkBurst(at) })
          : classify({ type: 'open', method, atMs, ip, userAgent, sentAtMs: send.sentAtMs, prefetch: batch.isPrefetch(at) });
        events.id.push((columns.id[at] ??= newId()));
        events.workspaceId.push(send.workspaceId);
        events.campaignId.push(send.campaignId);
        events.sendId.push(send.sendId);
        events.type.push(click ? 'click' : 'open');
        events.linkIndex.push(click ? columns.linkIndex[at]! : null);
        events.atMs.push(atMs);
        events.method.push(method);
        events.ip.push(ip ?? null);
        events.userAgent.push(userAgent ? userAgent.slice(0, MAX_USER_AGENT) : null);
        events.classification.push(verdict.classification);
        events.reasons.push(verdict.reasons);
      }
      return events;
    },

    /** Clicks waiting out their burst window. */
    get held(): number {
      return held.length;
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
