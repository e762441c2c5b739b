import { once } from 'node:events';
import type { Writable } from 'node:stream';

/*
 * An export is one JSON object written as it is read: each section is either a plain value
 * (small: a profile, a list of memberships) or an async iterable of rows read page by page
 * (export.repo.ts), written one row at a time. Nothing holds more than one page in memory,
 * and a slow reader slows the reading down (the writer waits for 'drain').
 */

export type ExportSection = readonly [name: string, content: unknown | AsyncIterable<unknown>];

const isAsyncIterable = (value: unknown): value is AsyncIterable<unknown> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

/** Rows, read page by page: `readPage(lastRowOfPreviousPage)` until a page comes back short. */
export async function* pagesOf<T>(pageSize: number, readPage: (after: T | undefined) => Promise<T[]>): AsyncIterable<T> {
  let after: T | undefined;
  for (;;) {
    const page = await readPage(after);
    yield* page;
    if (page.length < pageSize) return;
    after = page[page.length - 1];
  }
}

/** Writes `{"name": value, "rows": [ … ], …}` to `out`, honouring backpressure. Does not end `out`. */
export async function writeJsonDocument(out: Writable, sections: readonly ExportSection[]): Promise<void> {
  const write = async (text: string) => {
    if (out.destroyed) throw new Error('the client went away during the export');
    if (!out.write(text)) await Promise.race([once(out, 'drain'), once(out, 'close')]);
  };
  await write('{');
  let firstSection = true;
  for (const [name, content] of sections) {
    await write(`${firstSection ? '' : ','}\n${JSON.stringify(name)}:`);
    firstSection = false;
    if (!isAsyncIterable(content)) {
      await write(JSON.stringify(content ?? null));
      continue;
    }
    await write('[');
    let firstRow = true;
    for await (const row of content) {
      await write(`${firstRow ? '' : ','}\n${JSON.stringify(row)}`);
      firstRow = false;
    }
    await write(']');
  }
  await write('\n}\n');
}
