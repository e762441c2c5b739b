import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setImmediate as yieldToOthers } from 'node:timers/promises';
import { parse, CsvError } from 'csv-parse';
import { AppError, ValidationError } from '../errors.js';
import { isCleanText } from '../http/text.js';
import type { ContactsQueries, ImportedContact } from './contacts.repo.js';
import { normalizeEmailAddress } from './email-address.js';

/*
 * CSV import, in three steps so that a refused file changes nothing and a large one
 * never stalls other tenants:
 *  1. the request body is spooled to a temporary file, counting bytes on the stream
 *     itself (a chunked upload has no Content-Length to trust);
 *  2. a first pass checks the header, the CSV syntax and the row limit — any problem is
 *     a 400 before a single row is written;
 *  3. a second pass writes in small batches, each one statement on its own, yielding to
 *     the event loop between batches. There is deliberately no transaction around the
 *     whole file: on the embedded database a transaction holds the only connection, and
 *     every other request would wait for the entire import.
 * It is idempotent on the address: importing the same file twice leaves the same
 * contacts (the second run reports them unchanged), so an interrupted import is finished
 * by running it again.
 */

export const MAX_IMPORT_BYTES = 50 * 1024 * 1024;
const BATCH_SIZE = 200;
const MAX_ROWS = 100_000;
const MAX_REPORTED_ERRORS = 1_000;
const MAX_VALUE_LENGTH = 2_000;

export interface ImportRowError {
  /** 1-based line of the file the row starts on (line 1 is the header). */
  line: number;
  code: 'invalid_email' | 'value_too_long' | 'malformed_row' | 'invalid_text';
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
  // Own keys only: a header "Constructor" must not find Object.prototype.constructor.
  const joined = words.join('').toLowerCase();
  if (Object.hasOwn(FIELD_ALIASES, joined)) return FIELD_ALIASES[joined]!;
  return words
    .map((word, i) => {
      const lower = word === word.toUpperCase() ? word.toLowerCase() : word;
      const first = i === 0 ? lower.charAt(0).toLowerCase() : lower.charAt(0).toUpperCase();
      return first + lower.slice(1);
    })
    .join('');
}

const PARSE_OPTIONS = { bom: true, skip_empty_lines: true, trim: true, relax_column_count: true, info: true, max_record_size: 64 * 1024 } as const;

type CsvRecords = AsyncIterable<{ record: string[]; info: { lines: number } }>;

const tooLarge = () => new AppError('payload_too_large', 413, `A CSV file may be at most ${MAX_IMPORT_BYTES / 1024 / 1024} MB`);

/** Fails the stream as soon as more than `limit` bytes went through, whatever the headers said. */
function byteLimit(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      done(seen > limit ? tooLarge() : null, chunk);
    },
  });
}

/** Reads the rest of a refused upload (up to a bound) so that the client gets to read our answer. */
function discardRest(input: Readable, limit = 8 * 1024 * 1024): void {
  let drained = 0;
  input.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > limit) input.destroy();
  });
  input.resume();
}

async function spool(input: Readable): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'inboxtrail-import-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const file = path.join(dir, 'upload.csv');
  try {
    await pipeline(input, byteLimit(MAX_IMPORT_BYTES), createWriteStream(file));
    return { file, cleanup };
  } catch (error) {
    await cleanup();
    if (error instanceof AppError) {
      discardRest(input);
      throw error;
    }
    throw new AppError('request_aborted', 400, 'The upload was interrupted');
  }
}

async function* records(file: string): CsvRecords {
  try {
    yield* createReadStream(file).pipe(parse(PARSE_OPTIONS)) as CsvRecords;
  } catch (error) {
    if (error instanceof CsvError) throw new ValidationError([{ field: 'file', message: `not readable as CSV (${error.code})` }]);
    throw error;
  }
}

/** Pass 1: the whole file is checked before anything is written. Returns the column names. */
async function checkFile(file: string): Promise<string[]> {
  let fieldNames: string[] | undefined;
  let rows = 0;
  for await (const { record } of records(file)) {
    if (!fieldNames) {
      const bad = record.findIndex((header) => !isCleanText(header));
      if (bad !== -1) throw new ValidationError([{ field: `header.${bad + 1}`, message: 'contains a NUL character or an unpaired surrogate' }]);
      fieldNames = record.map(headerToFieldName);
      if (!fieldNames.includes('email')) {
        throw new ValidationError([{ field: 'header', message: 'the first line must name the columns, one of them "email"' }]);
      }
      continue;
    }
    rows += 1;
    if (rows > MAX_ROWS) throw new ValidationError([{ field: 'rows', message: `a file may hold at most ${MAX_ROWS} rows` }]);
  }
  if (!fieldNames) throw new ValidationError([{ field: 'file', message: 'is empty' }]);
  return fieldNames;
}

/** `onAddress` sees the normalized address of every good row (a campaign built from a file uses it). */
export async function importContactsCsv(
  repo: Pick<ContactsQueries, 'upsertImported'>,
  workspaceId: string,
  input: Readable,
  onAddress?: (email: string) => void,
): Promise<ImportReport> {
  const { file, cleanup } = await spool(input);
  try {
    const fieldNames = await checkFile(file);
    return await writeRows(repo, workspaceId, file, fieldNames, onAddress);
  } finally {
    await cleanup();
  }
}

/** Pass 2: rows to contacts, batch by batch, letting other requests run in between. */
async function writeRows(
  repo: Pick<ContactsQueries, 'upsertImported'>,
  workspaceId: string,
  file: string,
  fieldNames: string[],
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
    await yieldToOthers();
  };

  let header = true;
  for await (const { record, info } of records(file)) {
    if (header) {
      header = false;
      continue;
    }
    report.rows += 1;
    const line = info.lines;
    if (record.length > fieldNames.length) {
      fail({ line, code: 'malformed_row', message: `has ${record.length} values for ${fieldNames.length} columns` });
      continue;
    }
    const row: ImportedContact = { email: '', attributes: {} };
    let tooLong: string | undefined;
    let badText: string | undefined;
    record.forEach((value, i) => {
      const name = fieldNames[i]!;
      if (value.length > MAX_VALUE_LENGTH) tooLong ??= name;
      if (!isCleanText(value)) badText ??= name || `column ${i + 1}`;
      if (value === '' || !name) return;
      if (name === 'email' || name === 'firstName' || name === 'lastName') row[name] = value;
      else row.attributes[name] = value;
    });
    if (badText) {
      fail({ line, code: 'invalid_text', message: `${badText} contains a NUL character or an unpaired surrogate` });
      continue;
    }
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
  await flush();
  return report;
}
