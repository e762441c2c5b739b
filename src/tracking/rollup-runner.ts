import type { Logger } from '../logger.js';
import { settlesWithin } from '../time.js';
import { createWriteBackoff } from './write-backoff.js';
import type { RollupPassResult } from './rollups.repo.js';

/*
 * When the rollup pass runs (rollups.repo.ts does the work). In every process that writes
 * tracking events:
 *   - after writes, coalesced: at most one pass in flight; a pass starts `intervalMs` after the
 *     previous one, or at once when `eagerEvents` were written since (a backlog: larger windows
 *     aggregate better, and a full window is followed by the next one at once);
 *   - every `sweepMs`, whatever this process wrote: any process may roll up any pending
 *     record, so records left by a crashed process (or one that was stopped before its pass)
 *     are picked up by the others, or by this one after a restart;
 *   - drain() (the writer's flush, tests, shutdown): passes until nothing is pending.
 * While the event writer is behind (`writerBehind`), passes started by writes or the sweep wait
 * for it, up to `maxDeferMs` after the previous pass: under more hits than the database can
 * both record and roll up, its time goes to the events, which are lost if the writer's buffer
 * fills, and not to the stats, whose pending records are already stored and wait (the stats
 * lag instead; they catch up when the load falls). drain() never waits.
 * A failed pass leaves its records for the next (one transaction); passes back off like the
 * writer (0.5 s doubling to 15 s) and failures are counted and logged without parameters.
 * The writer never waits for a pass: the stats lag the events by about one pass.
 */

export interface RollupRunnerOptions {
  /** One pass; resolves to what it rolled up (`full`: its window was full, more may wait). */
  pass: () => Promise<RollupPassResult>;
  logger: Logger;
  /** Least time between two passes after writes (default 1 s). */
  intervalMs?: number;
  /** Events written here since the last pass that start one at once (default 5,000). */
  eagerEvents?: number;
  /** A pass this often, writes or not: records left by other (crashed) processes (default 10 s). */
  sweepMs?: number;
  /** True while the event writer is behind: passes other than drain() wait (default: never). */
  writerBehind?: () => boolean;
  /** The longest a waiting pass waits after the previous one, so the stats still move under overload (default 10 s). */
  maxDeferMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  now?: () => number;
  hooks?: { rolledUp?(result: RollupPassResult): void; failed?(): void };
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));
/** How often a waiting pass looks again whether the writer caught up. */
const DEFER_RECHECK_MS = 100;

export function createRollupRunner(options: RollupRunnerOptions) {
  const { pass, logger, hooks = {} } = options;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 1_000;
  const eagerEvents = options.eagerEvents ?? 5_000;
  const retryInitialMs = options.retryInitialMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 15_000;
  const writerBehind = options.writerBehind ?? (() => false);
  const maxDeferMs = options.maxDeferMs ?? 10_000;

  let running: Promise<boolean> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let timerDue = 0;
  let writtenSince = 0;
  let lastPassAt = 0;
  /** When a pass that waited for the writer looks again, written events or not (0: none waits). */
  let deferredUntil = 0;
  const backoff = createWriteBackoff({
    logger,
    now,
    initialMs: retryInitialMs,
    maxMs: retryMaxMs,
    failingMessage: 'tracking rollups not written yet; the events are kept pending and the pass retried',
    recoveredMessage: 'tracking rollups are being written again',
  });
  let closed = false;
  /** Set when close() stopped waiting for a pass: its end (committed or not) is not this process's concern any more. */
  let abandoned = false;

  /** One pass; undefined when it failed (logged, counted, backoff set). */
  async function passOnce(): Promise<RollupPassResult | undefined> {
    writtenSince = 0;
    deferredUntil = 0;
    lastPassAt = now();
    try {
      const result = await pass();
      if (result.records > 0) hooks.rolledUp?.(result);
      backoff.succeeded();
      return result;
    } catch (error) {
      // A pass close() gave up on fails when the database is let go: nothing to retry or report.
      if (abandoned) return undefined;
      hooks.failed?.();
      backoff.failed(error);
      return undefined;
    }
  }

  /**
   * Passes while their windows come back full (or, `untilEmpty`, until one finds nothing),
   * starting none after `deadline` (what is left stays pending); false if one failed.
   */
  async function passes(untilEmpty: boolean, deadline = Number.POSITIVE_INFINITY): Promise<boolean> {
    for (;;) {
      if (now() >= deadline) return true;
      if (!untilEmpty && writerBehind() && now() - lastPassAt < maxDeferMs) {
        // Looked at again shortly (schedule(), when this run ends), not at every batch the writer writes.
        deferredUntil = now() + DEFER_RECHECK_MS;
        return true;
      }
      const result = await passOnce();
      if (!result) return false;
      if (result.records === 0 || (!untilEmpty && !result.full)) return true;
      await nextTick();
    }
  }

  /** At most one run of passes at a time in this process. */
  function exclusive(untilEmpty: boolean, deadline?: number): Promise<boolean> {
    const next = (running ?? Promise.resolve(true)).then(() => passes(untilEmpty, deadline));
    const tracked = next.finally(() => {
      if (running === tracked) running = undefined;
      schedule();
    });
    running = tracked;
    return next;
  }

  function schedule(): void {
    // After writes, or to retry a failed pass at its backoff (its records still wait).
    if (closed || running || (writtenSince === 0 && backoff.failures === 0 && deferredUntil === 0)) return;
    const due = Math.max(backoff.retryAt, deferredUntil, writtenSince >= eagerEvents ? 0 : lastPassAt + intervalMs);
    // A pass already planned as soon or sooner stays; a backlog brings a later one forward.
    if (timer && timerDue <= due) return;
    if (timer) clearTimeout(timer);
    timerDue = due;
    timer = setTimeout(() => {
      timer = undefined;
      void exclusive(false);
    }, Math.max(0, due - now()));
    timer.unref();
  }

  function stopPasses(): void {
    closed = true;
    clearInterval(sweep);
    if (timer) clearTimeout(timer);
    timer = undefined;
  }

  const sweep = setInterval(() => {
    if (!running && now() >= backoff.retryAt) void exclusive(false);
  }, options.sweepMs ?? 10_000);
  sweep.unref();

  return {
    /** The writer wrote `count` events: a pass follows (coalesced). */
    written(count: number): void {
      if (count <= 0) return;
      writtenSince += count;
      schedule();
    },

    /** Passes now until nothing is pending (backoff ignored); false if a pass failed (its records stay pending). */
    drain(): Promise<boolean> {
      return exclusive(true);
    },

    /**
     * Starts no pass from now on (a pass running finishes): at shutdown the database's time goes
     * to the event writer first; close() rolls up with what time is left after it.
     */
    stop: stopPasses,

    /**
     * Stops the timers and rolls up what is pending, starting no pass (nor retry) after
     * `timeoutMs`, and waiting no longer than that for one still running (one started before
     * the stop, a long one: it was waited for without a limit, past the stop's deadline). A pass
     * is one transaction: one given up on either commits later or is rolled back when the
     * database is let go (main.ts closes it with what is left of the deadline), and its pending
     * rows stay for the next process's sweep. Resolves to false when it gave up on one.
     */
    async close({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<boolean> {
      stopPasses();
      const deadline = now() + timeoutMs;
      const rolledUp = (async () => {
        while (!(await exclusive(true, deadline)) && now() < deadline) {
          await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, Math.min(backoff.delayMs, deadline - now()))));
        }
      })();
      const settled = await settlesWithin(rolledUp, timeoutMs);
      abandoned = !settled;
      return settled;
    },
  };
}

export type RollupRunner = ReturnType<typeof createRollupRunner>;
