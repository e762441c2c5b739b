import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Response } from 'express';

/**
 * Streams a CSV download with backpressure: each chunk is written when the client has
 * taken the previous ones. A failure after the first byte cannot become an error reply
 * any more, so it cuts the connection (the client sees an incomplete download, never a
 * file that looks whole).
 */
export async function streamCsvDownload(res: Response, filename: string, chunks: AsyncIterable<string>): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', 'text/csv; charset=utf-8');
  res.setHeader('Content-Disposition', `attachment; filename="${filename.replace(/[^A-Za-z0-9._-]/g, '_')}"`);
  res.setHeader('Cache-Control', 'no-store');
  await pipeline(Readable.from(chunks), res);
}

/**
 * A cell a spreadsheet would read as a formula when opened (OWASP "CSV Injection"): text that
 * starts with = + - or @, or with a tab or carriage return (which some spreadsheets skip before
 * reading one).
 */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV cell (RFC 4180: quoted when it holds a comma, quote or line break, quotes doubled).
 * Text that starts like a formula gets a leading `'`, so opening the file never runs anything a
 * contact or a recipient typed. A number (or a boolean, or a date as ISO 8601) is written as
 * itself: we wrote it, it cannot carry a formula, and `-5` must stay the number -5, not become
 * the text `'-5`. An object (JSON detail) is written as its JSON, which starts with `{` or `[`.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text: string;
  if (value instanceof Date) text = value.toISOString();
  else if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'bigint' || typeof value === 'boolean') text = String(value);
  else {
    text = typeof value === 'object' ? JSON.stringify(value) : String(value);
    if (FORMULA_START.test(text)) text = `'${text}`;
  }
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV line of these cells, ended as RFC 4180 says (CRLF). */
export const csvLine = (cells: readonly unknown[]) => `${cells.map(csvCell).join(',')}\r\n`;
