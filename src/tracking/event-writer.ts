import type { Logger } from '../logger.js';
import type { TrackingEventRow } from './tracking.repo.js';
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

export interface EventWriterOptions<T> {
  /** Turns buffered items into rows (may read the database; items it cannot place are left out). */
  prepare: (items: T[]) => Promise<TrackingEventRow[]> | TrackingEventRow[];
  /** Writes the rows; resolves to how many were new (the rest had landed already), or nothing when unknown. */
  insert: (rows: TrackingEventRow[]) => Promise<number | void>;
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
  /** Rows per statement while the server is busy (default: batchSize): shorter statements, shorter stalls. */
  busyBatchSize?: number;
  /** Flush period (default 1 s). */
  intervalMs?: number;
  /**
   * Wall time one scheduled flush may take, while the server is busy, before leaving the
   * rest to the next one — unless the buffer is more than 80% full (default: no limit).
   * With an in-process database (PGlite) the writes share the thread with the requests;
   * this keeps a burst answered fast and writes its backlog once it is over. When the
   * buffer has not emptied for a while (sustained load), the budget grows from this base to
   * the whole interval (between `rampAfterMs` and `rampFullMs` of backlog), so that a steady
   * stream is kept up with and a burst is not.
   */
  tickBudgetMs?: number;
  rampAfterMs?: number;
  rampFullMs?: number;
  /** Is the server busy with requests right now? The budget applies only then (default: always). */
  isBusy?: () => boolean;
  retryInitialMs?: number;
  retryMaxMs?: number;
  now?: () => number;
  hooks?: EventWriterHooks;
  /** Where buffered items wait (default: an array of the items; tracking keeps hits by column, hit-columns.ts). */
  queue?: WriterQueue<T>;
}

/** The buffer's FIFO: O(1) push, batch take from the head, drop from the head. */
export interface WriterQueue<T> {
  readonly length: number;
  push(item: T): void;
  take(count: number): T[];
  dropOldest(count: number): number;
}

/** A FIFO of the items themselves. */
class Queue<T> implements WriterQueue<T> {
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

export function createEventWriter<T>(options: EventWriterOptions<T>) {
  const { prepare, insert, logger, hooks = {} } = options;
  const now = options.now ?? Date.now;
  const maxBuffer = options.maxBuffer ?? 500_000;
  const batchSize = options.batchSize ?? 1_000;
  const busyBatchSize = options.busyBatchSize ?? batchSize;
  const maxBatchSize = Math.max(batchSize, options.maxBatchSize ?? batchSize);
  const tickBudgetMs = options.tickBudgetMs ?? Number.POSITIVE_INFINITY;
  const retryInitialMs = options.retryInitialMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 15_000;
  const isBusy = options.isBusy ?? (() => true);
  const intervalMs = options.intervalMs ?? 1_000;
  const rampAfterMs = options.rampAfterMs ?? 5_000;
  const rampFullMs = options.rampFullMs ?? 60_000;
  /** When the buffer was last empty: how long a backlog has been standing. */
  let emptySince = now();
  /** 0 → 1 as a backlog stands from rampAfterMs to rampFullMs. */
  const rampNow = () => {
    const standing = size() === 0 ? 0 : now() - emptySince;
    return Math.min(1, Math.max(0, (standing - rampAfterMs) / (rampFullMs - rampAfterMs)));
  };
  const budgetNow = () => (Number.isFinite(tickBudgetMs) ? tickBudgetMs + (intervalMs - tickBudgetMs) * rampNow() : tickBudgetMs);
  /**
   * Rows for the next statement. While the server is busy under a budget: the short busy
   * batch, growing toward batchSize with the budget (a standing backlog: keeping up matters
   * more than the stall of one statement). Otherwise a quarter of the backlog, within
   * [batchSize, maxBatchSize].
   */
  const batchNow = (budgetMs: number) => {
    if (budgetMs !== Number.POSITIVE_INFINITY && isBusy()) return Math.round(busyBatchSize + (batchSize - busyBatchSize) * rampNow());
    return Math.min(maxBatchSize, Math.max(batchSize, Math.floor(size() / 4)));
  };

  const queue = options.queue ?? new Queue<T>();
  /** The batch whose write failed: retried before anything else, never dropped (it may have landed). */
  let retrying: T[] = [];
  const size = () => queue.length + retrying.length;
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

  const enforceBound = () => {
    if (size() <= maxBuffer) return;
    const dropped = queue.dropOldest(size() - maxBuffer);
    if (dropped > 0) hooks.dropped?.(dropped, 'buffer_full');
  };

  /**
   * Prepares and inserts one batch; resolves to how many rows it made and how many were new.
   * The rows are not referenced once the insert has them: where the insert hands them to
   * another thread, the answering thread's heap does not carry them while they are written.
   */
  async function write(batch: T[]): Promise<{ inserted: number | void; prepared: number }> {
    const { prepared, writing } = await Promise.resolve(prepare(batch)).then((rows) => ({ prepared: rows.length, writing: insert(rows) }));
    return { inserted: await writing, prepared };
  }

  /** Writes batches until empty, a failure, or the budget; true unless a write failed. */
  async function drain(budgetMs: number, ignoreBackoff: boolean): Promise<boolean> {
    const started = now();
    while (size() > 0) {
      if (!ignoreBackoff && now() < backoff.retryAt) return false;
      const room = batchNow(budgetMs) - retrying.length;
      // The failed batch goes first, topped up with newer items (the same ids: what landed is skipped).
      const batch = room > 0 ? retrying.concat(queue.take(room)) : retrying;
      retrying = [];
      try {
        const { inserted, prepared } = await write(batch);
        hooks.written?.(typeof inserted === 'number' ? inserted : prepared);
        if (typeof inserted === 'number' && inserted < prepared) hooks.alreadyWritten?.(prepared - inserted);
        if (size() === 0) emptySince = now();
        backoff.succeeded();
      } catch (error) {
        retrying = batch;
        enforceBound();
        hooks.failed?.();
        backoff.failed(error, { buffered: size() });
        return false;
      }
      if (size() > 0 && now() - started >= budgetMs && size() < maxBuffer * 0.8 && isBusy()) return true;
      // Let requests through between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return true;
  }

  const run = (budgetMs: number, ignoreBackoff: boolean): Promise<boolean> => {
    const previous = draining ?? Promise.resolve(true);
    const next = previous.then(() => drain(budgetMs, ignoreBackoff));
    const tracked = next.finally(() => {
      if (draining === tracked) draining = undefined;
    });
    draining = tracked;
    return next;
  };

  const timer = setInterval(() => {
    if (size() === 0) emptySince = now();
    else if (!draining) void run(budgetNow(), false);
  }, intervalMs);
  timer.unref();

  return {
    push(item: T): void {
      if (closed) {
        hooks.dropped?.(1, 'shutdown');
        return;
      }
      if (size() === 0) emptySince = now();
      queue.push(item);
      if (size() > maxBuffer) enforceBound();
    },

    /** Items waiting to be written. */
    get size(): number {
      return size();
    },

    /** Writes everything now (one attempt, backoff ignored); resolves to how many items are still waiting. */
    async flush(): Promise<number> {
      await run(Number.POSITIVE_INFINITY, true);
      return size();
    },

    /**
     * Stops the timer and writes what is left, retrying until `timeoutMs`; whatever is
     * still unwritten then is counted as dropped and logged.
     */
    async close({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<void> {
      clearInterval(timer);
      const deadline = now() + timeoutMs;
      while (size() > 0 && now() < deadline) {
        if (await run(Number.POSITIVE_INFINITY, true)) continue;
        await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, Math.min(backoff.delayMs, deadline - now()))));
      }
      closed = true;
      if (size() > 0) {
        const lost = queue.dropOldest(queue.length) + retrying.length;
        retrying = [];
        hooks.dropped?.(lost, 'shutdown');
        logger.error({ lost }, 'tracking events could not be written before shutdown');
      }
    },
  };
}

export type EventWriter<T> = ReturnType<typeof createEventWriter<T>>;
