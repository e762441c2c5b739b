import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../logger.js';
import { createEventWriter } from './event-writer.js';
import { eventColumnsOf } from './event-columns.js';
import type { TrackingEventRow } from './tracking.repo.js';

const logger = createLogger('silent');
const row = (n: number): TrackingEventRow => ({
  id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  workspaceId: 'w',
  campaignId: 'c',
  sendId: 's',
  type: 'open',
  linkIndex: null,
  atMs: n,
  method: 'GET',
  ip: null,
  userAgent: null,
  classification: 'human',
  reasons: ['no_machine_signal'],
});

function harness(options: { maxBuffer?: number; batchSize?: number; failWhile?: () => boolean } = {}) {
  const inserted: number[][] = [];
  const counts = { written: 0, dropped: 0, failed: 0 };
  const writer = createEventWriter<number>({
    prepare: (items) => eventColumnsOf(items.map(row)),
    insert: async (events) => {
      if (options.failWhile?.()) throw Object.assign(new Error('Failed query: insert … params: 203.0.113.9'), { cause: { code: '57P01', message: 'terminating connection' } });
      inserted.push(events.atMs);
    },
    logger,
    maxBuffer: options.maxBuffer ?? 1000,
    batchSize: options.batchSize ?? 100,
    retryInitialMs: 10,
    retryMaxMs: 40,
    hooks: {
      written: (n) => (counts.written += n),
      dropped: (n) => (counts.dropped += n),
      failed: () => (counts.failed += 1),
    },
  });
  return { writer, inserted, counts };
}

/** A writer that records the size of each statement it would run. */
function batchSizeRecorder(options: Omit<Parameters<typeof createEventWriter<number>>[0], 'prepare' | 'insert' | 'logger'>) {
  const inserted: number[] = [];
  const writer = createEventWriter<number>({ ...options, prepare: (items) => eventColumnsOf(items.map(row)), insert: async (events) => void inserted.push(events.id.length), logger });
  return { writer, inserted };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('event writer', () => {
  it('writes in multi-row batches, in order', async () => {
    const { writer, inserted, counts } = harness({ batchSize: 4 });
    for (let i = 0; i < 10; i += 1) writer.push(i);
    expect(await writer.flush()).toBe(0);
    expect(inserted).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(counts.written).toBe(10);
    await writer.close();
  });

  it('flushes on its own at least every second', async () => {
    vi.useFakeTimers();
    const { writer, inserted } = harness();
    writer.push(1);
    writer.push(2);
    expect(inserted).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(inserted).toEqual([[1, 2]]);
    await writer.close();
  });

  it('keeps a failed batch, retries with backoff, and writes it once the database is back', async () => {
    vi.useFakeTimers();
    let down = true;
    const { writer, inserted, counts } = harness({ failWhile: () => down });
    writer.push(1);
    writer.push(2);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(inserted).toEqual([]);
    expect(counts.failed).toBeGreaterThanOrEqual(2);
    expect(writer.size).toBe(2);
    writer.push(3);
    down = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(inserted.flat()).toEqual([1, 2, 3]);
    expect(counts.dropped).toBe(0);
    await writer.close();
  });

  it('drops the oldest beyond the bound, and counts every drop', async () => {
    const { writer, inserted, counts } = harness({ maxBuffer: 5, failWhile: () => true });
    for (let i = 0; i < 8; i += 1) writer.push(i);
    expect(counts.dropped).toBe(3);
    expect(writer.size).toBe(5);
    await writer.flush(); // fails: the batch goes back, the bound still holds
    expect(writer.size).toBe(5);
    expect(inserted).toEqual([]);
    await writer.close({ timeoutMs: 50 });
    expect(counts.dropped).toBe(8); // the rest is lost at shutdown, and counted
  });

  it('close() writes what is buffered, retrying while the database is briefly away', async () => {
    let failures = 2;
    const { writer, inserted, counts } = harness({ failWhile: () => failures-- > 0 });
    for (let i = 0; i < 5; i += 1) writer.push(i);
    await writer.close({ timeoutMs: 2_000 });
    expect(inserted.flat()).toEqual([0, 1, 2, 3, 4]);
    expect(counts.dropped).toBe(0);
    writer.push(99); // after close: refused and counted
    expect(counts.dropped).toBe(1);
  });

  it('never logs the failed statement (it carries addresses and user agents)', async () => {
    const lines: string[] = [];
    const writer = createEventWriter<number>({
      prepare: (items) => eventColumnsOf(items.map(row)),
      insert: async () => {
        throw Object.assign(new Error('Failed query: insert into tracking_events … params: 203.0.113.9,Mozilla/5.0'), { cause: { code: '42P01', message: 'relation "tracking_events" does not exist' } });
      },
      logger: createLogger('info', { write: (line: string) => lines.push(line) } as never),
    });
    writer.push(1);
    await writer.flush();
    await writer.close({ timeoutMs: 10 });
    const text = lines.join('\n');
    expect(text).toContain('relation \\"tracking_events\\" does not exist');
    expect(text).not.toContain('203.0.113.9');
    expect(text).not.toContain('Mozilla');
  });

  it('grows its batches with the backlog (a quarter of it, at most maxBatchSize) and keeps the small batch when little waits', async () => {
    const { writer, inserted } = batchSizeRecorder({ batchSize: 10, maxBatchSize: 100 });
    for (let i = 0; i < 1_000; i += 1) writer.push(i);
    expect(await writer.flush()).toBe(0);
    // 1,000 waiting: 100 a statement (the cap) until fewer than 400 wait, then a quarter, then 10s.
    expect(inserted.slice(0, 6)).toEqual([100, 100, 100, 100, 100, 100]);
    expect(inserted.slice(-3, -1)).toEqual([10, 10]);
    expect(inserted.at(-1)).toBeLessThanOrEqual(10);
    expect(inserted.reduce((a, b) => a + b, 0)).toBe(1_000);
    inserted.length = 0;
    for (let i = 0; i < 15; i += 1) writer.push(i);
    expect(await writer.flush()).toBe(0);
    expect(inserted).toEqual([10, 5]);
    await writer.close();
  });
  it('close() ends a drain already running at its own deadline (a shutdown), and counts and reports what is left', async () => {
    // 30 batches of 10 at ~20 ms each: ~600 ms to write them all; close() gets 100 ms.
    const inserted: number[] = [];
    const counts = { dropped: 0 };
    const writer = createEventWriter<number>({
      prepare: (items) => eventColumnsOf(items.map(row)),
      insert: async (events) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        inserted.push(...events.atMs);
      },
      logger,
      batchSize: 10,
      hooks: { dropped: (n) => (counts.dropped += n) },
    });
    for (let i = 0; i < 300; i += 1) writer.push(i);
    void writer.flush();
    const started = Date.now();
    const { lost, unsettled } = await writer.close({ timeoutMs: 100 });
    // It stopped by its deadline (plus the batch in flight then), not after writing everything
    // (30 batches of 20 ms: 600 ms): the caller (main.ts) closes the database after it, and the
    // process stops at a hard deadline. 450 ms leaves a busy host room and still tells them apart.
    expect(Date.now() - started).toBeLessThan(450);
    expect(lost).toBeGreaterThan(0);
    expect(unsettled).toBe(0);
    expect(counts.dropped).toBe(lost);
    expect(inserted.length + lost).toBe(300);
  });

  it('close() waits out its deadline for a batch in flight even when nothing else keeps the process alive', async () => {
    // A write that never settles and holds no handle: the wait's own timer is all that keeps the
    // process running. An unref()'d one let it exit mid-close, before close() answered (and
    // before a shutdown closed its database); close() answers at its deadline instead.
    const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'event-writer.ts');
    const script = `import(${JSON.stringify(writer)}).then(async ({ createEventWriter }) => {
      const writer = createEventWriter({ prepare: (items) => ({ id: items }), insert: () => new Promise(() => {}), logger: { warn() {}, error() {}, info() {} } });
      writer.push(1);
      void writer.stop();
      await new Promise((resolve) => setImmediate(resolve)); // the drain has taken the item: it is in flight
      console.log(JSON.stringify(await writer.close({ timeoutMs: 200 })));
    });`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000 });
    expect(JSON.parse(stdout.trim())).toEqual({ lost: 0, unsettled: 1 });
  });

  it('stop() writes everything in the largest statements, whatever the backlog (a shutdown: the fewest statements)', async () => {
    const { writer, inserted } = batchSizeRecorder({ batchSize: 10, maxBatchSize: 100 });
    for (let i = 0; i < 250; i += 1) writer.push(i);
    expect(await writer.stop()).toBe(0);
    expect(inserted).toEqual([100, 100, 50]);
    await writer.close();
  });
});
