import type { Logger } from '../logger.js';
import { settlesWithin } from '../time.js';
import type { EventColumns } from './event-columns.js';
import { createWriteBackoff } from './write-backoff.js';

/*
 * Tracking hits are answered first and written later, in batches: a bounded in-memory
 * buffer, flushed at least every second and on close(). When the database fails, the
 * batch is kept aside and retried first, with backoff; only when the buffer is full are
 * the oldest other items dropped, and every drop is counted. The failed batch itself is
 * never dropped: its transaction may have committed with only the answer lost, and
 * counting it as dropped would be a lie (so the buffer may exceed its bound by one batch).
 *
 * Items are prepared (resolved + classified) at flush time, in batches, so that an open
 * costs the request nothing but a push. Event ids are chosen before the first attempt,
 * so a batch that landed but whose acknowledgement was lost is not written twice.
 */

export interface EventWriterHooks {
  written?(count: number): void;
  /** Rows of a retried batch that had landed already (their acknowledgement was lost): skipped, not counted twice. */
  alreadyWritten?(count: number): void;
  dropped?(count: number, reason: 'buffer_full' | 'shutdown'): void;
  failed?(): void;
}

/** What a queue hands over: a batch that knows its size and can be topped up with a newer one. */
export interface WriterBatch<B> {
  readonly length: number;
  concat(newer: B): B;
}

export interface EventWriterOptions<T, B extends WriterBatch<B>> {
  /** Turns a batch into events by column (may read the database; items it cannot place are left out). */
  prepare: (batch: B) => Promise<EventColumns> | EventColumns;
  /** Writes the events; resolves to how many were new (the rest had landed already), or nothing when unknown. */
  insert: (events: EventColumns) => Promise<number | void>;
  logger: Logger;
  /** Items held at most; beyond it the oldest are dropped (default 500,000). */
  maxBuffer?: number;
  /** Rows per insert statement (default 1,000). */
  batchSize?: number;
  /**
   * Rows per statement at most when a backlog builds (default: batchSize): a batch takes a
   * quarter of what is waiting, between batchSize and this. Each statement has a fixed cost
   * (on PGlite it dominated batches of 250), so a backlog is written in fewer, larger ones;
   * an idle writer keeps small batches, so a hit waits no longer than before.
   */
  maxBatchSize?: number;
  /** Flush period (default 1 s). */
  intervalMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  now?: () => number;
  hooks?: EventWriterHooks;
  /** Where buffered items wait (default: an array of the items; tracking keeps hits by column, hit-columns.ts). */
  queue?: WriterQueue<T, B>;
}

/** The buffer's FIFO: O(1) push, batch take from the head, drop from the head. */
export interface WriterQueue<T, B> {
  readonly length: number;
  push(item: T): void;
  take(count: number): B;
  dropOldest(count: number): number;
}

/** A FIFO of the items themselves; a batch is an array of them. */
class Queue<T> implements WriterQueue<T, T[]> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  take(count: number): T[] {
    const batch = this.items.slice(this.head, this.head + count);
    this.head += batch.length;
    this.compact();
    return batch;
  }

  dropOldest(count: number): number {
    const dropped = Math.min(count, this.length);
    this.head += dropped;
    this.compact();
    return dropped;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/** A writer of items kept as they are (batches are arrays). */
export function createEventWriter<T>(options: EventWriterOptions<T, T[]>): EventWriter<T>;
/** A writer over a queue of its own (tracking: hits by column, hit-columns.ts). */
export function createEventWriter<T, B extends WriterBatch<B>>(options: EventWriterOptions<T, B> & { queue: WriterQueue<T, B> }): EventWriter<T>;
export function createEventWriter<T, B extends WriterBatch<B>>(options: EventWriterOptions<T, B>) {
  const { prepare, insert, logger, hooks = {} } = options;
  const now = options.now ?? Date.now;
  const maxBuffer = options.maxBuffer ?? 500_000;
  const batchSize = options.batchSize ?? 1_000;
  const maxBatchSize = Math.max(batchSize, options.maxBatchSize ?? batchSize);
  const retryInitialMs = options.retryInitialMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 15_000;
  const intervalMs = options.intervalMs ?? 1_000;
  /** Rows for the next statement: a quarter of the backlog, within [batchSize, maxBatchSize]. */
  const batchNow = () => (stopping ? maxBatchSize : Math.min(maxBatchSize, Math.max(batchSize, Math.floor(size() / 4))));

  const queue = options.queue ?? (new Queue<T>() as unknown as WriterQueue<T, B>);
  /** The batch whose write failed: retried before anything else, never dropped (it may have landed). */
  let retrying: B | undefined;
  const size = () => queue.length + (retrying?.length ?? 0);
  let draining: Promise<boolean> | undefined;
  const backoff = createWriteBackoff({
    logger,
    now,
    initialMs: retryInitialMs,
    maxMs: retryMaxMs,
    failingMessage: 'tracking events not written yet; keeping them and retrying',
    recoveredMessage: 'tracking events are being written again',
  });
  let closed = false;
  /** Items of the batch being written (neither queued nor lost until its write settles). */
  let inFlight = 0;
  /**
   * Stopping (stop() or close()): the largest statements, whatever waits. Each statement has a
   * fixed cost (a round trip and a commit; on PGlite also its planning), and at a stop nothing
   * answered waits behind one: 2,500 held clicks took 8 statements on PGlite otherwise, now 3.
   */
  let stopping = false;
  /** No batch starts after this (close()'s deadline): a drain already running stops there too. */
  let stopAt = Number.POSITIVE_INFINITY;

  const enforceBound = () => {
    if (size() <= maxBuffer) return;
    const dropped = queue.dropOldest(size() - maxBuffer);
    if (dropped > 0) hooks.dropped?.(dropped, 'buffer_full');
  };

  /**
   * Prepares and inserts one batch; resolves to how many events it made and how many were new.
   * The events are not referenced once the insert has them: where the insert hands them to
   * another thread, the answering thread's heap does not carry them while they are written.
   */
  async function write(batch: B): Promise<{ inserted: number | void; prepared: number }> {
    const { prepared, writing } = await Promise.resolve(prepare(batch)).then((events) => ({ prepared: events.id.length, writing: insert(events) }));
    return { inserted: await writing, prepared };
  }

  /** Writes batches until empty or a failure; true unless a write failed. */
  async function drain(ignoreBackoff: boolean): Promise<boolean> {
    while (size() > 0) {
      if (now() >= stopAt) return false;
      if (!ignoreBackoff && now() < backoff.retryAt) return false;
      const room = batchNow() - (retrying?.length ?? 0);
      // The failed batch goes first, topped up with newer items (the same ids: what landed is skipped).
      const batch = !retrying ? queue.take(room) : room > 0 && queue.length > 0 ? retrying.concat(queue.take(room)) : retrying;
      retrying = undefined;
      inFlight = batch.length;
      try {
        const { inserted, prepared } = await write(batch);
        hooks.written?.(typeof inserted === 'number' ? inserted : prepared);
        if (typeof inserted === 'number' && inserted < prepared) hooks.alreadyWritten?.(prepared - inserted);
        backoff.succeeded();
      } catch (error) {
        retrying = batch;
        enforceBound();
        hooks.failed?.();
        backoff.failed(error, { buffered: size() });
        return false;
      } finally {
        inFlight = 0;
      }
      // Let requests through between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return true;
  }

  const run = (ignoreBackoff: boolean): Promise<boolean> => {
    const previous = draining ?? Promise.resolve(true);
    const next = previous.then(() => drain(ignoreBackoff));
    const tracked = next.finally(() => {
      if (draining === tracked) draining = undefined;
    });
    draining = tracked;
    return next;
  };

  const timer = setInterval(() => {
    if (size() > 0 && !draining) void run(false);
  }, intervalMs);
  timer.unref();

  return {
    push(item: T): void {
      if (closed) {
        hooks.dropped?.(1, 'shutdown');
        return;
      }
      queue.push(item);
      if (size() > maxBuffer) enforceBound();
    },

    /** Items waiting to be written. */
    get size(): number {
      return size();
    },

    /**
     * The start of a shutdown: writes everything now, in the largest statements, until empty or
     * a failure (then close() retries); resolves to how many items are still waiting.
     */
    async stop(): Promise<number> {
      stopping = true;
      await run(true);
      return size();
    },

    /** Writes everything now (one attempt, backoff ignored); resolves to how many items are still waiting. */
    async flush(): Promise<number> {
      await run(true);
      return size();
    },

    /**
     * Stops the timer and writes what is left, retrying until `timeoutMs` and starting no batch
     * after it; whatever is still unwritten then is counted as dropped and returned (the caller
     * logs it with its own counts).
     */
    async close({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<{ lost: number; unsettled: number }> {
      clearInterval(timer);
      const deadline = now() + timeoutMs;
      // Also ends a drain started before (stop(), at the start of a shutdown) at the deadline,
      // between two batches: the caller's own deadline (the process's) comes after this one.
      stopAt = deadline;
      stopping = true;
      while (size() > 0 && now() < deadline) {
        if (await run(true)) continue;
        if (now() >= deadline) break;
        await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, Math.min(backoff.delayMs, deadline - now()))));
      }
      // A batch in flight at the deadline is awaited until then (it may still land); one that
      // has not settled by then (a hung database) is reported apart: it may have landed.
      if (inFlight > 0 && draining) await settlesWithin(draining, deadline - now());
      closed = true;
      let lost = 0;
      if (size() > 0) {
        lost = queue.dropOldest(queue.length) + (retrying?.length ?? 0);
        retrying = undefined;
        hooks.dropped?.(lost, 'shutdown');
      }
      return { lost, unsettled: inFlight };
    },
  };
}

export interface EventWriter<T = unknown> {
  push(item: T): void;
  readonly size: number;
  stop(): Promise<number>;
  flush(): Promise<number>;
  /**
   * Resolves to how many items were left unwritten at the deadline (`lost`, counted as dropped,
   * reason `shutdown`) and how many were still being written (`unsettled`: they may have landed).
   */
  close(options?: { timeoutMs?: number }): Promise<{ lost: number; unsettled: number }>;
}
