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
