import type { QueuedHit } from './recorder.js';

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
 * (its fields are copied into the columns at once) and is made again only when its batch is
 * taken, right before it is written.
 */

const CHUNK = 2048;
const CLICK = 1;
const HONEYPOT = 2;
const LINK_BURST = 4;

interface Chunk {
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

const newChunk = (): Chunk => ({
  flags: new Uint8Array(CHUNK),
  linkIndex: new Int32Array(CHUNK),
  atMs: new Float64Array(CHUNK),
  subject: new Array<unknown>(CHUNK).fill(undefined),
  method: new Array<string>(CHUNK).fill(''),
  ip: new Array<string | undefined>(CHUNK).fill(undefined),
  userAgent: new Array<string | undefined>(CHUNK).fill(undefined),
  id: new Array<string | undefined>(CHUNK).fill(undefined),
});

/** The event writer's queue (event-writer.ts WriterQueue) for tracking hits; also the recorder's held clicks. */
export class HitColumns {
  private readonly chunks: Chunk[] = [];
  /** Emptied chunks kept for reuse (a steady stream allocates none). */
  private readonly spare: Chunk[] = [];
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
      this.chunks.push(this.spare.pop() ?? newChunk());
      this.tail = 0;
    }
    const chunk = this.chunks[this.chunks.length - 1]!;
    const at = this.tail;
    const { hit } = item;
    if (item.kind === 'click') {
      chunk.flags[at] = CLICK | (item.honeypot ? HONEYPOT : 0) | (item.linkBurst ? LINK_BURST : 0);
      chunk.subject[at] = item.send;
      chunk.linkIndex[at] = item.linkIndex;
    } else {
      chunk.flags[at] = 0;
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

  /** The oldest `count` hits, as objects again, in order. */
  take(count: number): QueuedHit[] {
    const out: QueuedHit[] = [];
    while (out.length < count && this.count > 0) out.push(this.shift());
    return out;
  }

  /** The oldest hit (the caller checks `length` first). */
  shift(): QueuedHit {
    const chunk = this.chunks[0]!;
    const at = this.head;
    const flags = chunk.flags[at]!;
    const hit = { atMs: chunk.atMs[at]!, method: chunk.method[at]!, ip: chunk.ip[at], userAgent: chunk.userAgent[at] };
    const id = chunk.id[at];
    const item: QueuedHit =
      flags & CLICK
        ? { kind: 'click', id, send: chunk.subject[at] as Extract<QueuedHit, { kind: 'click' }>['send'], linkIndex: chunk.linkIndex[at]!, honeypot: (flags & HONEYPOT) !== 0, linkBurst: (flags & LINK_BURST) !== 0, hit }
        : { kind: 'open', id, sendId: chunk.subject[at] as string, hit };
    this.forget(chunk, at);
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
  private forget(chunk: Chunk, at: number): void {
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

  private recycle(chunk: Chunk): void {
    if (this.spare.length < 4) this.spare.push(chunk);
  }
}
