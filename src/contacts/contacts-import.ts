import type { Readable } from 'node:stream';
import { parse, CsvError } from 'csv-parse';
import { ValidationError } from '../errors.js';
import type { ContactsQueries, ImportedContact } from './contacts.repo.js';
import { normalizeEmailAddress } from './email-address.js';

/*
 * CSV import streams the request body through csv-parse and writes in batches, so a
 * large file never sits in memory. It is idempotent on the address: importing the
 * same file twice leaves the same contacts (the second run reports them unchanged).
 */

const BATCH_SIZE = 500;
const MAX_ROWS = 100_000;
const MAX_REPORTED_ERRORS = 1_000;
const MAX_VALUE_LENGTH = 2_000;

export interface ImportRowError {
  /** 1-based line of the file the row starts on (line 1 is the header). */
  line: number;
  code: 'invalid_email' | 'value_too_long' | 'malformed_row';
  message: string;
}

export interface ImportReport {
  rows: number;
  created: number;
  updated: number;
  unchanged: number;
  failed: number;
  errors: ImportRowError[];
  errorsTruncated: boolean;
}

/** Header spellings (lowercased, separators removed) that mean one of the contact's own fields. */
const FIELD_ALIASES: Record<string, 'email' | 'firstName' | 'lastName'> = {
  email: 'email',
  emailaddress: 'email',
  mail: 'email',
  firstname: 'firstName',
  givenname: 'firstName',
  first: 'firstName',
  lastname: 'lastName',
  surname: 'lastName',
  familyname: 'lastName',
  last: 'lastName',
};

/** "First Name", "first_name", "E-mail", "Company Name" → firstName, firstName, email, companyName. */
export function headerToFieldName(header: string): string {
  const words = header.trim().split(/[^A-Za-z0-9]+/).filter(Boolean);
  const alias = FIELD_ALIASES[words.join('').toLowerCase()];
  if (alias) return alias;
  return words
    .map((word, i) => {
      const lower = word === word.toUpperCase() ? word.toLowerCase() : word;
      const first = i === 0 ? lower.charAt(0).toLowerCase() : lower.charAt(0).toUpperCase();
      return first + lower.slice(1);
    })
    .join('');
}

/** `onAddress` sees the normalized address of every good row (a campaign built from a file uses it). */
export async function importContactsCsv(
  repo: Pick<ContactsQueries, 'upsertImported'>,
  workspaceId: string,
  input: Readable,
  onAddress?: (email: string) => void,
): Promise<ImportReport> {
  const report: ImportReport = { rows: 0, created: 0, updated: 0, unchanged: 0, failed: 0, errors: [], errorsTruncated: false };
  const fail = (error: ImportRowError) => {
    report.failed += 1;
    if (report.errors.length < MAX_REPORTED_ERRORS) report.errors.push(error);
    else report.errorsTruncated = true;
  };

  // Rows of one batch are keyed by lowercased address: a repeat inside the batch merges into one row.
  let batch = new Map<string, ImportedContact>();
  let batchRows = 0;
  const flush = async () => {
    if (batch.size === 0) return;
    const { created, updated } = await repo.upsertImported(workspaceId, [...batch.values()]);
    report.created += created;
    report.updated += updated;
    report.unchanged += batchRows - created - updated;
    batch = new Map();
    batchRows = 0;
  };

  let fieldNames: string[] | undefined;
  const parser = input.pipe(
    parse({ bom: true, skip_empty_lines: true, trim: true, relax_column_count: true, info: true, max_record_size: 64 * 1024 }),
  );
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!fieldNames) {
        fieldNames = record.map(headerToFieldName);
        if (!fieldNames.includes('email')) {
          throw new ValidationError([{ field: 'header', message: 'the first line must name the columns, one of them "email"' }]);
        }
        continue;
      }
      report.rows += 1;
      if (report.rows > MAX_ROWS) {
        throw new ValidationError([{ field: 'rows', message: `a file may hold at most ${MAX_ROWS} rows` }]);
      }
      const line = info.lines;
      if (record.length > fieldNames.length) {
        fail({ line, code: 'malformed_row', message: `has ${record.length} values for ${fieldNames.length} columns` });
        continue;
      }
      const row: ImportedContact = { email: '', attributes: {} };
      let tooLong: string | undefined;
      record.forEach((value, i) => {
        const name = fieldNames![i]!;
        if (value.length > MAX_VALUE_LENGTH) tooLong ??= name;
        if (value === '' || !name) return;
        if (name === 'email' || name === 'firstName' || name === 'lastName') row[name] = value;
        else row.attributes[name] = value;
      });
      if (tooLong) {
        fail({ line, code: 'value_too_long', message: `${tooLong} is longer than ${MAX_VALUE_LENGTH} characters` });
        continue;
      }
      const email = normalizeEmailAddress(row.email);
      if (!email) {
        // The message names the line, not the value: a bad cell may hold anything.
        fail({ line, code: 'invalid_email', message: 'email is missing or not a valid address' });
        continue;
      }
      const key = email.toLowerCase();
      const earlier = batch.get(key);
      batch.set(key, earlier ? { ...earlier, ...row, email, attributes: { ...earlier.attributes, ...row.attributes } } : { ...row, email });
      onAddress?.(email);
      batchRows += 1;
      if (batch.size >= BATCH_SIZE) await flush();
    }
  } catch (error) {
    if (error instanceof CsvError) {
      throw new ValidationError([{ field: 'file', message: `not readable as CSV (${error.code})` }]);
    }
    throw error;
  }
  if (!fieldNames) throw new ValidationError([{ field: 'file', message: 'is empty' }]);
  await flush();
  return report;
}
