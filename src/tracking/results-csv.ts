import { csvCell } from '../http/csv-download.js';
import type { RecipientResult } from './results.service.js';

/*
 * The per-recipient results as CSV (RFC 4180), written a page at a time; each cell through
 * http/csv-download.ts `csvCell`, the spreadsheet-formula guard every CSV download shares.
 */

export const RESULTS_CSV_HEADER = [
  'email',
  'first_name',
  'last_name',
  'step',
  'status',
  'skip_reason',
  'sent_at',
  'opens_human',
  'opens_machine',
  'opens_unknown',
  'clicks_human',
  'clicks_machine',
  'clicks_unknown',
  'replied',
  'bounced',
  'unsubscribed',
] as const;

export function resultsCsvLine(row: RecipientResult): string {
  return [
    row.email,
    row.firstName,
    row.lastName,
    row.step,
    row.status,
    row.skipReason,
    row.sentAt,
    row.opens.human,
    row.opens.machine,
    row.opens.unknown,
    row.clicks.human,
    row.clicks.machine,
    row.clicks.unknown,
    row.replied,
    row.bounced,
    row.unsubscribed,
  ]
    .map(csvCell)
    .join(',');
}

/** The whole file as chunks: the header, then one chunk per page of rows. */
export async function* resultsCsv(pages: AsyncIterable<RecipientResult[]>): AsyncGenerator<string> {
  yield `${RESULTS_CSV_HEADER.join(',')}\r\n`;
  for await (const page of pages) {
    if (page.length > 0) yield `${page.map(resultsCsvLine).join('\r\n')}\r\n`;
  }
}
