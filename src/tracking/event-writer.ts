import type { Logger } from '../logger.js';
import type { TrackingEventRow } from './tracking.repo.js';

/*
 * Tracking hits are answered first and written later, in batches: a bounded in-memory
 * buffer, flushed at least every second and on close(). When the database fails, the
 * batch goes back to the front of the buffer and is retried with backoff; only when the
 * buffer is full are the oldest items dropped, and every drop is counted.
 *
 * Items are prepared (resolved + classified) at flush time, in batches, so that an open
 * costs the request nothing but a push. Event ids are chosen before the first attempt,
 * so a batch that landed but whose acknowledgement was lost is not written twice.
 */

export interface EventWriterHooks {
  written?(count: number): void;
  dropped?(count: number, reason: 'buffer_full' | 'shutdown'): void;
  failed?(): void;
}

export interface EventWriterOptions<T> {
  /** Turns buffered items into rows (may read the database; items it cannot place are left out). */
  prepare: (items: T[]) => Promise<TrackingEventRow[]> | TrackingEventRow[];
  insert: (rows: TrackingEventRow[]) => Promise<void>;
  logger: Logger;
  /** Items held at most; beyond it the oldest are dropped (default 200,000). */
  maxBuffer?: number;
  /** Rows per insert statement (default 1,000). */
  batchSize?: number;
  /** Flush period (default 1 s). */
  intervalMs?: number;
  /**
   * Wall time one scheduled flush may take before leaving the rest to the next one, unless
   * the buffer is more than half full (default: no limit). With an in-process database
   * (PGlite) the writes share the thread with the requests; this keeps bursts answered fast.
   */
  tickBudgetMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  now?: () => number;
  hooks?: EventWriterHooks;
}

/** A FIFO with O(1) push and batch take. */
class Queue<T> {
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

  /** Puts a batch back at the front, in order. */
  restore(batch: T[]): void {
    this.items = batch.concat(this.items.slice(this.head));
    this.head = 0;
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

/** A database error without its parameters (they hold addresses and user agents). */
function describe(error: unknown): { code?: string; message: string } {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.message) return { code: cause.code, message: cause.message };
  const message = error instanceof Error ? error.message.split('\n')[0]! : 'unknown error';
  return { code: (error as { code?: string })?.code, message: message.slice(0, 200) };
}

export function createEventWriter<T>(options: EventWriterOptions<T>) {
  const { prepare, insert, logger, hooks = {} } = options;
  const now = options.now ?? Date.now;
  const maxBuffer = options.maxBuffer ?? 200_000;
  const batchSize = options.batchSize ?? 1_000;
  const tickBudgetMs = options.tickBudgetMs ?? Number.POSITIVE_INFINITY;
  const retryInitialMs = options.retryInitialMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 15_000;

  const queue = new Queue<T>();
  let draining: Promise<boolean> | undefined;
  let retryDelay = 0;
  let retryAt = 0;
  let failuresInOutage = 0;
  let lastFailureLog = 0;
  let closed = false;

  const enforceBound = () => {
    if (queue.length <= maxBuffer) return;
    const dropped = queue.dropOldest(queue.length - maxBuffer);
    hooks.dropped?.(dropped, 'buffer_full');
  };

  /** Writes batches until empty, a failure, or the budget; true unless a write failed. */
  async function drain(budgetMs: number, ignoreBackoff: boolean): Promise<boolean> {
    const started = now();
    while (queue.length > 0) {
      if (!ignoreBackoff && now() < retryAt) return false;
      const batch = queue.take(batchSize);
      try {
        const rows = await prepare(batch);
        await insert(rows);
        hooks.written?.(rows.length);
        if (failuresInOutage > 0) logger.info({ failures: failuresInOutage }, 'tracking events are being written again');
        failuresInOutage = 0;
        retryDelay = 0;
        retryAt = 0;
      } catch (error) {
        queue.restore(batch);
        enforceBound();
        failuresInOutage += 1;
        retryDelay = retryDelay === 0 ? retryInitialMs : Math.min(retryDelay * 2, retryMaxMs);
        retryAt = now() + retryDelay;
        hooks.failed?.();
        if (failuresInOutage === 1 || now() - lastFailureLog > 30_000) {
          lastFailureLog = now();
          logger.warn({ err: describe(error), buffered: queue.length, retryInMs: retryDelay }, 'tracking events not written yet; keeping them and retrying');
        }
        return false;
      }
      if (queue.length > 0 && now() - started >= budgetMs && queue.length < maxBuffer / 2) return true;
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
    if (!draining && queue.length > 0) void run(tickBudgetMs, false);
  }, options.intervalMs ?? 1_000);
  timer.unref();

  return {
    push(item: T): void {
      if (closed) {
        hooks.dropped?.(1, 'shutdown');
        return;
      }
      queue.push(item);
      if (queue.length > maxBuffer) enforceBound();
    },

    /** Items waiting to be written. */
    get size(): number {
      return queue.length;
    },

    /** Writes everything now (one attempt, backoff ignored); resolves to how many items are still waiting. */
    async flush(): Promise<number> {
      await run(Number.POSITIVE_INFINITY, true);
      return queue.length;
    },

    /**
     * Stops the timer and writes what is left, retrying until `timeoutMs`; whatever is
     * still unwritten then is counted as dropped and logged.
     */
    async close({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<void> {
      clearInterval(timer);
      const deadline = now() + timeoutMs;
      while (queue.length > 0 && now() < deadline) {
        if (await run(Number.POSITIVE_INFINITY, true)) continue;
        await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, Math.min(retryDelay, deadline - now()))));
      }
      closed = true;
      if (queue.length > 0) {
        const lost = queue.dropOldest(queue.length);
        hooks.dropped?.(lost, 'shutdown');
        logger.error({ lost }, 'tracking events could not be written before shutdown');
      }
    },
  };
}

export type EventWriter<T> = ReturnType<typeof createEventWriter<T>>;
