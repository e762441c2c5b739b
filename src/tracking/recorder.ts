import { randomUUID } from 'node:crypto';
import { BURST_WINDOW_MS, SAME_CLIENT_WINDOW_MS, burstThreshold, inLinkBurst, type Classify } from './classify.js';
import { HitColumns, type HitBatch } from './hit-columns.js';
import { TtlLru } from './lru.js';
import { contentLinkCountOf, type ResolvedSend, type SendCache } from './send-cache.js';
import { emptyEventColumns, type EventColumns } from './event-columns.js';

/*
 * Between the HTTP handler and the event writer. Opens are queued raw and resolved +
 * classified at flush time, in batches (an open never waits for the database). Clicks
 * arrive resolved (the redirect needed the link) and are held SAME_CLIENT_WINDOW_MS (10 s),
 * so that the rules about neighbouring hits see the hits on both sides of each click:
 * "every link of the message within a second" (the recent clicks of each send are kept in
 * a bounded map), and "the same client as a HEAD or honeypot hit of the send within 10 s"
 * (a scanner clicks the button, then the hidden link 100 ms later; the machine evidence of
 * each send is kept in another bounded map, only for sends that have some). Their verdict
 * and event are then made at flush time too, off the request path. Both maps live in this
 * process: hits of one scanner answered by two processes are judged apart (CLASSIFICATION.md,
 * "Limits of the classification").
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
  | { kind: 'click'; id?: string; send: ResolvedSend; linkIndex: number; honeypot: boolean; linkBurst: boolean; sameClientAsMachine?: boolean; hit: RawHit };

type QueuedClick = Extract<QueuedHit, { kind: 'click' }>;

interface MachineHit {
  atMs: number;
  ip: string;
  userAgent: string | undefined;
}

/** Stored user agents are capped: enough to classify and audit, not a place for junk. */
const MAX_USER_AGENT = 512;

export interface RecorderOptions {
  cache: SendCache;
  classify: Classify;
  push: (item: QueuedHit) => void;
  /** A valid token whose send no longer exists (deleted campaign): dropped and counted. */
  onUnresolved?: (type: 'open' | 'click') => void;
  /** How long a click is held before its neighbours are judged (default SAME_CLIENT_WINDOW_MS). */
  holdMs?: number;
  /** Held clicks at most; beyond it the oldest is judged early, with what is known (default 200,000). */
  maxHeld?: number;
  now?: () => number;
  newId?: () => string;
}

export function createRecorder(options: RecorderOptions) {
  const { cache, classify, push } = options;
  const now = options.now ?? Date.now;
  const newId = options.newId ?? randomUUID;
  const holdMs = options.holdMs ?? SAME_CLIENT_WINDOW_MS;
  const maxHeld = options.maxHeld ?? 200_000;
  /**
   * Per send, per content link: the times of its last few clicks (honeypot hits are not kept).
   * Kept until the last click of the send has been released (each click renews its send's entry).
   */
  const recentClicksTtl = holdMs + 2 * BURST_WINDOW_MS;
  // Entries must outlive the hold of every held click: sized for as many sends as clicks may be
  // held (a 50,000 cap lost a burst's neighbours at ~4,200 clicking sends a second with a 10 s hold).
  const neighbourSends = Math.max(50_000, maxHeld);
  const recentClicks = new TtlLru<string, Map<number, number[]>>(neighbourSends, recentClicksTtl, now);
  const PER_LINK = 8;
  /**
   * Per send with any: its last few HEAD and honeypot hits (time, address, agent), kept until a
   * click they could mark has been released (a click SAME_CLIENT_WINDOW_MS later, held holdMs).
   */
  const machineHits = new TtlLru<string, MachineHit[]>(neighbourSends, SAME_CLIENT_WINDOW_MS + holdMs + 2 * BURST_WINDOW_MS, now);
  const PER_SEND_MACHINE_HITS = 8;
  const rememberMachineHit = (sendId: string, hit: RawHit) => {
    // Without an address nothing says a later hit is the same client.
    if (hit.ip === undefined) return;
    const list = machineHits.get(sendId) ?? [];
    list.push({ atMs: hit.atMs, ip: hit.ip, userAgent: hit.userAgent });
    if (list.length > PER_SEND_MACHINE_HITS) list.shift();
    machineHits.set(sendId, list);
  };
  /** Strings are interned by the handler (one per distinct agent and address), so === is cheap. */
  const nearMachineHit = (sendId: string, hit: RawHit) => {
    if (hit.ip === undefined || machineHits.size === 0) return false;
    const list = machineHits.get(sendId);
    if (!list) return false;
    for (const m of list) if (m.ip === hit.ip && m.userAgent === hit.userAgent && Math.abs(m.atMs - hit.atMs) <= SAME_CLIENT_WINDOW_MS) return true;
    return false;
  };
  /** Clicks waiting out their hold, by column (hit-columns.ts: thousands a second live ~10 s). */
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
    const required = burstThreshold(contentLinkCountOf(send));
    // Only the burst needs the neighbours (known now); the verdict and the row are made at flush time.
    click.linkBurst = !honeypot && required !== undefined && burstAround(recentClicks.get(send.sendId), hit.atMs, required);
    // A HEAD or honeypot hit is a machine by itself; the rule is for the same client's other clicks.
    click.sameClientAsMachine = !honeypot && hit.method !== 'HEAD' && nearMachineHit(send.sendId, hit);
    push(click);
  };

  const releaseHeld = (all: boolean) => {
    const due = now() - holdMs;
    while (held.length > 0 && (all || held.headAtMs()! <= due)) release(held.shift() as QueuedClick);
  };

  const timer = setInterval(() => releaseHeld(false), Math.min(1_000, Math.max(50, Math.floor(holdMs / 4))));
  timer.unref();
  /** False once closed: a click answered after that (a request in flight at shutdown) is judged at once. */
  let holding = true;

  return {
    open(sendId: string, hit: RawHit): void {
      if (hit.method === 'HEAD') rememberMachineHit(sendId, hit);
      push({ kind: 'open', sendId, hit });
    },

    click(send: ResolvedSend, linkIndex: number, hit: RawHit): void {
      const honeypot = send.links.byIndex.get(linkIndex)?.honeypot ?? false;
      if (honeypot || hit.method === 'HEAD') rememberMachineHit(send.sendId, hit);
      if (!honeypot) {
        // Renewed on every click: the entry must outlive the hold of the send's last click.
        const recent = recentClicks.get(send.sendId) ?? new Map<number, number[]>();
        recentClicks.set(send.sendId, recent);
        const times = recent.get(linkIndex);
        if (!times) recent.set(linkIndex, [hit.atMs]);
        else {
          // A link clicked over and over keeps only its last few times: constant cost per click.
          times.push(hit.atMs);
          if (times.length > PER_LINK) times.shift();
        }
      }
      if (!holding) return release({ kind: 'click', send, linkIndex, honeypot, linkBurst: false, hit });
      if (held.length >= maxHeld) release(held.shift() as QueuedClick);
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
          ? classify({ type: 'click', method, atMs, ip, userAgent, sentAtMs: send.sentAtMs, prefetch: batch.isPrefetch(at), honeypot: batch.isHoneypot(at), linkBurst: batch.isLinkBurst(at), sameClientAsMachine: batch.isSameClientAsMachine(at) })
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

    /** Clicks waiting out their hold (SAME_CLIENT_WINDOW_MS). */
    get held(): number {
      return held.length;
    },

    /** Classifies every held click now, with what is known so far (tests, shutdown). */
    releaseAll(): void {
      releaseHeld(true);
    },

    /**
     * Shutdown: judges every held click now, with what is known so far, and holds no later
     * one (a request still in flight): the writer gets them all at once. Returns how many
     * were released.
     */
    close(): number {
      clearInterval(timer);
      holding = false;
      const released = held.length;
      releaseHeld(true);
      return released;
    },
  };
}

export type Recorder = ReturnType<typeof createRecorder>;
