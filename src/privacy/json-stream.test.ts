import { once } from 'node:events';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pagesOf, writeJsonDocument } from './json-stream.js';

/** A reader that takes `delayMs` per write: the client at the other end of a slow connection. */
function slowSink(delayMs: number) {
  const chunks: string[] = [];
  const sink = new Writable({
    highWaterMark: 1024,
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      setTimeout(done, delayMs);
    },
  });
  return { sink, text: () => chunks.join(''), written: () => chunks.length };
}

describe('writeJsonDocument', () => {
  it('writes one valid JSON object from values and paged rows', async () => {
    const { sink, text } = slowSink(0);
    const rows = pagesOf<{ id: number }>(3, async (after) => {
      const start = after ? after.id + 1 : 0;
      return Array.from({ length: Math.max(0, Math.min(3, 8 - start)) }, (_, i) => ({ id: start + i }));
    });
    await writeJsonDocument(sink, [
      ['format', 'x/1'],
      ['empty', pagesOf(10, async () => [])],
      ['rows', rows],
      ['nothing', undefined],
    ]);
    sink.end();
    await once(sink, 'finish');
    expect(JSON.parse(text())).toEqual({ format: 'x/1', empty: [], rows: Array.from({ length: 8 }, (_, id) => ({ id })), nothing: null });
  });

  it('P-12 an export reads no further ahead of a slow client than its buffer allows (nothing is built in memory)', async () => {
    const { sink, written } = slowSink(1);
    let produced = 0;
    let maxAhead = 0;
    async function* rows() {
      for (let i = 0; i < 2_000; i += 1) {
        produced += 1;
        maxAhead = Math.max(maxAhead, produced - written());
        yield { id: i, padding: 'x'.repeat(100) };
      }
    }
    await writeJsonDocument(sink, [['rows', rows()]]);
    expect(produced).toBe(2_000);
    // ~120 bytes a row against a 1 KiB buffer: a handful of rows ahead, never the document.
    expect(maxAhead).toBeLessThan(30);
  });

  it('stops when the client goes away', async () => {
    const { sink } = slowSink(1);
    let produced = 0;
    async function* rows() {
      for (;;) {
        produced += 1;
        if (produced === 50) sink.destroy();
        yield { id: produced };
      }
    }
    await expect(writeJsonDocument(sink, [['rows', rows()]])).rejects.toThrow(/went away/);
    expect(produced).toBeLessThan(100);
  });
});
