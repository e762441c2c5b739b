import type { QueuedHit } from './recorder.js';
import type { ResolvedSend } from './send-cache.js';

/*
 * A FIFO of buffered hits stored by column, in fixed chunks: times and flags in typed arrays
 * (off the JavaScript heap), the rest as references: interned user agents and addresses, the
 * send cache's entries, and an open's send id (one flat string per decoded token, tokens.ts).
 *
 * Why: a hit waits up to a flush interval (1 s) in the buffer, and thousands arrive each
 * second. Held as objects (a hit, its raw facts) they survive every young-generation
 * collection of the answering thread and are copied each time; at 9,000 hits/s that was
 * ~1 MB copied per scavenge and scavenges of 3–12 ms — the event-loop stalls behind the
 * tracking p99 (BENCHMARKS.md, issue 14 sixth pass). Here a pushed hit's object dies young
 * (its fields are copied into the columns at once). A batch is taken by column too (HitBatch)
 * and prepared into events by column (recorder.ts): no object per hit is made again on its way
 * to the database (the seventh pass: the batch's objects, made and kept across the send
 * lookup, were most of what still survived on a PostgreSQL server).
 */

const CHUNK = 2048;
const CLICK = 1;
const HONEYPOT = 2;
const LINK_BURST = 4;
/** An open whose send was gone when its batch was prepared: counted once, not again on a retry. */
const UNRESOLVED_COUNTED = 8;
/** The client said it fetched ahead of a person (RawHit.prefetch). */
const PREFETCH = 16;
/** A click from the same client as a HEAD or honeypot hit of its send, close in time (recorder.ts). */
const SAME_CLIENT_AS_MACHINE = 32;

/** Hits by column: `length` slots of each column (a chunk of the queue, or a batch taken from it). */
interface Columns {
  flags: Uint8Array;
  linkIndex: Int32Array;
  atMs: Float64Array;
  /** An open's send id; a click's resolved send. */
  subject: unknown[];
  method: string[];
  ip: (string | undefined)[];
  userAgent: (string | undefined)[];
  id: (string | undefined)[];
}

const newColumns = (length: number): Columns => ({
  flags: new Uint8Array(length),
  linkIndex: new Int32Array(length),
  atMs: new Float64Array(length),
  subject: new Array<unknown>(length).fill(undefined),
  method: new Array<string>(length).fill(''),
  ip: new Array<string | undefined>(length).fill(undefined),
  userAgent: new Array<string | undefined>(length).fill(undefined),
  id: new Array<string | undefined>(length).fill(undefined),
});

function copySlot(from: Columns, fromAt: number, to: Columns, toAt: number): void {
  to.flags[toAt] = from.flags[fromAt]!;
  to.linkIndex[toAt] = from.linkIndex[fromAt]!;
  to.atMs[toAt] = from.atMs[fromAt]!;
  to.subject[toAt] = from.subject[fromAt];
  to.method[toAt] = from.method[fromAt]!;
  to.ip[toAt] = from.ip[fromAt];
  to.userAgent[toAt] = from.userAgent[fromAt];
  to.id[toAt] = from.id[fromAt];
}

/** One slot as the hit it was pushed as. */
function itemAt(columns: Columns, at: number): QueuedHit {
  const flags = columns.flags[at]!;
  const hit = { atMs: columns.atMs[at]!, method: columns.method[at]!, ip: columns.ip[at], userAgent: columns.userAgent[at], ...((flags & PREFETCH) !== 0 ? { prefetch: true } : {}) };
  const id = columns.id[at];
  return flags & CLICK
    ? { kind: 'click', id, send: columns.subject[at] as ResolvedSend, linkIndex: columns.linkIndex[at]!, honeypot: (flags & HONEYPOT) !== 0, linkBurst: (flags & LINK_BURST) !== 0, sameClientAsMachine: (flags & SAME_CLIENT_AS_MACHINE) !== 0, hit }
    : { kind: 'open', id, sendId: columns.subject[at] as string, hit };
}

/**
 * Hits taken from the queue to be written, still by column: the recorder prepares them into
 * events by column (recorder.ts) without making an object per hit. Event ids are set on the
 * batch when it is first prepared (`id`), so a batch retried after a failed write keeps them.
 */
export class HitBatch {
  constructor(
    readonly length: number,
    readonly columns: Columns,
  ) {}

  isClick(at: number): boolean {
    return (this.columns.flags[at]! & CLICK) !== 0;
  }

  isHoneypot(at: number): boolean {
    return (this.columns.flags[at]! & HONEYPOT) !== 0;
  }

  isLinkBurst(at: number): boolean {
    return (this.columns.flags[at]! & LINK_BURST) !== 0;
  }

  isSameClientAsMachine(at: number): boolean {
    return (this.columns.flags[at]! & SAME_CLIENT_AS_MACHINE) !== 0;
  }

  isPrefetch(at: number): boolean {
    return (this.columns.flags[at]! & PREFETCH) !== 0;
  }

  /** True the first time it is asked for a slot (a retried batch does not count its unresolved opens again). */
  firstUnresolved(at: number): boolean {
    const first = (this.columns.flags[at]! & UNRESOLVED_COUNTED) === 0;
    this.columns.flags[at] = this.columns.flags[at]! | UNRESOLVED_COUNTED;
    return first;
  }

  /** An open's send id. */
  sendIdAt(at: number): string {
    return this.columns.subject[at] as string;
  }

  /** A click's resolved send. */
  sendAt(at: number): ResolvedSend {
    return this.columns.subject[at] as ResolvedSend;
  }

  /** This batch, then the newer one (a failed batch topped up before it is retried). */
  concat(newer: HitBatch): HitBatch {
    const joined = newColumns(this.length + newer.length);
    for (let i = 0; i < this.length; i += 1) copySlot(this.columns, i, joined, i);
    for (let i = 0; i < newer.length; i += 1) copySlot(newer.columns, i, joined, this.length + i);
    return new HitBatch(this.length + newer.length, joined);
  }
}

/** The event writer's queue (event-writer.ts WriterQueue) for tracking hits; also the recorder's held clicks. */
export class HitColumns {
  private readonly chunks: Columns[] = [];
  /** Emptied chunks kept for reuse (a steady stream allocates none). */
  private readonly spare: Columns[] = [];
  /** Next slot to read in chunks[0]. */
  private head = 0;
  /** Next slot to write in the last chunk (CHUNK: a new chunk is needed). */
  private tail = CHUNK;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: QueuedHit): void {
    if (this.tail === CHUNK) {
      this.chunks.push(this.spare.pop() ?? newColumns(CHUNK));
      this.tail = 0;
    }
    const chunk = this.chunks[this.chunks.length - 1]!;
    const at = this.tail;
    const { hit } = item;
    const prefetch = hit.prefetch ? PREFETCH : 0;
    if (item.kind === 'click') {
      chunk.flags[at] = CLICK | (item.honeypot ? HONEYPOT : 0) | (item.linkBurst ? LINK_BURST : 0) | (item.sameClientAsMachine ? SAME_CLIENT_AS_MACHINE : 0) | prefetch;
      chunk.subject[at] = item.send;
      chunk.linkIndex[at] = item.linkIndex;
    } else {
      chunk.flags[at] = prefetch;
      chunk.subject[at] = item.sendId;
    }
    chunk.atMs[at] = hit.atMs;
    chunk.method[at] = hit.method;
    chunk.ip[at] = hit.ip;
    chunk.userAgent[at] = hit.userAgent;
    chunk.id[at] = item.id;
    this.tail += 1;
    this.count += 1;
  }

  /** The oldest hit's time, or undefined when empty. */
  headAtMs(): number | undefined {
    return this.count === 0 ? undefined : this.chunks[0]!.atMs[this.head];
  }

  /** The oldest `count` hits (fewer when fewer wait), in order, by column. */
  take(count: number): HitBatch {
    const length = Math.min(count, this.count);
    const batch = newColumns(length);
    for (let i = 0; i < length; i += 1) {
      copySlot(this.chunks[0]!, this.head, batch, i);
      this.forget(this.chunks[0]!, this.head);
      this.advance();
    }
    return new HitBatch(length, batch);
  }

  /** The oldest hit, as an object (the caller checks `length` first). */
  shift(): QueuedHit {
    const chunk = this.chunks[0]!;
    const item = itemAt(chunk, this.head);
    this.forget(chunk, this.head);
    this.advance();
    return item;
  }

  dropOldest(count: number): number {
    let dropped = 0;
    while (dropped < count && this.count > 0) {
      this.forget(this.chunks[0]!, this.head);
      this.advance();
      dropped += 1;
    }
    return dropped;
  }

  /** Lets go of a slot's references (a taken hit must not be kept alive by its old slot). */
  private forget(chunk: Columns, at: number): void {
    chunk.subject[at] = undefined;
    chunk.ip[at] = undefined;
    chunk.userAgent[at] = undefined;
    chunk.id[at] = undefined;
  }

  private advance(): void {
    this.count -= 1;
    this.head += 1;
    if (this.count === 0) {
      // Empty: keep one chunk to write into again, from its start.
      while (this.chunks.length > 1) this.recycle(this.chunks.pop()!);
      this.head = 0;
      this.tail = this.chunks.length === 0 ? CHUNK : 0;
    } else if (this.head === CHUNK) {
      this.recycle(this.chunks.shift()!);
      this.head = 0;
    }
  }

  private recycle(chunk: Columns): void {
    if (this.spare.length < 4) this.spare.push(chunk);
  }
}
