import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../logger.js';
import { createRollupRunner } from './rollup-runner.js';

/*
 * When passes run (the passes themselves are tested against real databases in
 * test/integration/tracking-rollup-pass.test.ts): here a queue of pending "records" in memory,
 * a pass takes up to `window` of them.
 */

const logger = createLogger('silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function harness(options: { window?: number; failWhile?: () => boolean; intervalMs?: number; writerBehind?: () => boolean; maxDeferMs?: number } = {}) {
  const state = { pending: 0, inFlight: 0, maxInFlight: 0, passes: 0, failures: 0, rolledUp: 0 };
  const window = options.window ?? 10;
  const runner = createRollupRunner({
    pass: async () => {
      state.inFlight += 1;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      state.passes += 1;
      await sleep(2);
      state.inFlight -= 1;
      if (options.failWhile?.()) throw Object.assign(new Error('Failed query: … params'), { cause: { code: '57P01', message: 'terminating connection' } });
      const taken = Math.min(window, state.pending);
      state.pending -= taken;
      return { records: taken, events: taken, skipped: 0, full: taken === window };
    },
    logger,
    intervalMs: options.intervalMs ?? 50,
    eagerEvents: 25,
    sweepMs: 60_000,
    retryInitialMs: 5,
    retryMaxMs: 20,
    writerBehind: options.writerBehind,
    maxDeferMs: options.maxDeferMs,
    hooks: { rolledUp: (r) => (state.rolledUp += r.events), failed: () => (state.failures += 1) },
  });
  const write = (n: number) => {
    state.pending += n;
    runner.written(n);
  };
  return { runner, state, write };
}

describe('rollup runner', () => {
  it('runs a pass after writes, coalesced: one in flight, at most one per interval unless a backlog waits', async () => {
    const { runner, state, write } = harness({ intervalMs: 1_000 });
    for (let i = 0; i < 5; i += 1) write(1);
    // The first write after an idle period starts a pass at once; the others wait for the interval.
    await vi.waitFor(() => expect(state.pending).toBe(0), { timeout: 900, interval: 5 });
    const after = state.passes;
    write(1);
    await sleep(100);
    expect(state.pending).toBe(1);
    expect(state.passes).toBe(after);
    // A backlog (eagerEvents written since): at once, full windows one after the other.
    write(60);
    await vi.waitFor(() => expect(state.pending).toBe(0), { timeout: 900, interval: 5 });
    expect(state.maxInFlight).toBe(1);
    await runner.close();
  });

  it('a failed pass leaves the records and is retried with backoff; drain reports it; close keeps trying until its deadline', async () => {
    let failing = true;
    const { runner, state, write } = harness({ failWhile: () => failing });
    write(15);
    expect(await runner.drain()).toBe(false);
    expect(state.pending).toBe(15);
    expect(state.failures).toBeGreaterThan(0);
    setTimeout(() => (failing = false), 40);
    await runner.close({ timeoutMs: 2_000 });
    expect(state.pending).toBe(0);
    expect(state.rolledUp).toBe(15);
  });

  it('while the writer is behind, passes wait for it (drain does not); they follow once it caught up, and at least every maxDeferMs', async () => {
    let behind = false;
    const { runner, state, write } = harness({ intervalMs: 20, writerBehind: () => behind, maxDeferMs: 1_000 });
    write(5);
    await vi.waitFor(() => expect(state.pending).toBe(0), { timeout: 900, interval: 5 });
    behind = true;
    const passesBefore = state.passes;
    for (let i = 0; i < 10; i += 1) {
      write(30); // a backlog that would start passes at once
      await sleep(20);
    }
    expect(state.passes).toBe(passesBefore);
    expect(state.pending).toBe(300);
    // Still behind: one pass once maxDeferMs has gone by since the previous one, then waiting again.
    await vi.waitFor(() => expect(state.passes).toBe(passesBefore + 1), { timeout: 2_000, interval: 5 });
    await sleep(150);
    expect(state.passes).toBe(passesBefore + 1);
    // Caught up: passes follow without another write.
    behind = false;
    await vi.waitFor(() => expect(state.pending).toBe(0), { timeout: 900, interval: 5 });
    // drain never waits.
    behind = true;
    write(25);
    expect(await runner.drain()).toBe(true);
    expect(state.pending).toBe(0);
    await runner.close();
  });

  it('drain runs passes until nothing is pending', async () => {
    const { runner, state } = harness({ window: 7 });
    state.pending = 100; // left by another process: no write here
    expect(await runner.drain()).toBe(true);
    expect(state.pending).toBe(0);
    await runner.close();
  });
  it('stop() (a shutdown: the writer first) starts no pass after writes; close() later rolls up what is pending', async () => {
    const { runner, state, write } = harness({ intervalMs: 10 });
    runner.stop();
    write(30);
    await sleep(100);
    expect(state.passes).toBe(0);
    await runner.close({ timeoutMs: 2_000 });
    expect(state.pending).toBe(0);
  });

  it('close() waits for a pass still running no longer than its deadline (it waited for it without one: a long pass pushed a stop past its 5 s)', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let passes = 0;
    const runner = createRollupRunner({
      pass: async () => {
        passes += 1;
        await held; // a pass that outlasts the stop (a big window, a lock, a slow disk)
        return { records: 1, events: 1, skipped: 0, full: false };
      },
      logger,
      sweepMs: 60_000,
    });
    runner.written(1); // a pass after writes, started before the stop
    await vi.waitFor(() => expect(passes).toBe(1), { timeout: 900, interval: 5 });
    const started = Date.now();
    expect(await runner.close({ timeoutMs: 200 })).toBe(false);
    expect(Date.now() - started).toBeLessThan(1_000);
    // It was let go, not cut: it still settles; nothing more starts.
    release();
    await sleep(100);
    expect(passes).toBe(1);
  });
});
