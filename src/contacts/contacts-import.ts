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
import { MAX_CONTACT_ATTRIBUTES } from './contact-columns.js';
import { parseConsentCells, resolveColumns, type Column, type ColumnMapping, type ImportedConsent } from './import-columns.js';

export { headerToFieldName } from './import-columns.js';

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
 *
 * A `consent` column (opted_in / opted_out, with optional consent_source and consent_at)
 * appends consent records (P-10, P-11) under the policy version in force, right after its
 * batch of contacts is written. A row whose consent the contact already has as its latest
 * record adds nothing, so a re-import appends nothing either.
 */

export const MAX_IMPORT_BYTES = 50 * 1024 * 1024;
const BATCH_SIZE = 200;
const MAX_ROWS = 100_000;
const MAX_REPORTED_ERRORS = 1_000;
const MAX_VALUE_LENGTH = 2_000;

export interface ImportRowError {
  /** 1-based line of the file the row starts on (line 1 is the header). */
  line: number;
  code: 'invalid_email' | 'value_too_long' | 'malformed_row' | 'invalid_text' | 'invalid_consent' | 'invalid_consent_at' | 'too_many_attributes';
  message: string;
}

export interface ImportReport {
  rows: number;
  created: number;
  updated: number;
  unchanged: number;
  /** Consent records appended (rows whose consent was already the latest add none). */
  consents: number;
  /** Rows saying `opted_in` for a contact whose latest record is their own opt-out: nothing appended (theirs to undo). */
  optOutsKept: number;
  failed: number;
  errors: ImportRowError[];
  errorsTruncated: boolean;
}

const PARSE_OPTIONS = { bom: true, skip_empty_lines: true, trim: true, relax_column_count: true, raw: true, max_record_size: 64 * 1024 } as const;

type CsvRecords = AsyncIterable<{ record: string[]; raw: string }>;

const lineBreaks = (text: string) => text.match(/\r\n|\r|\n/g)?.length ?? 0;

/**
 * The line each record starts on, from the records' own text (`raw`: the records laid end to end
 * are the file, each with the skipped empty lines before it and its line break after it). The
 * parser's `info.lines` is where a record ends, and counts a CR LF inside a quoted value as two.
 */
function lineCounter() {
  let next = 1;
  return (raw: string) => {
    const start = next + lineBreaks(/^[\r\n]*/.exec(raw)![0]);
    next += lineBreaks(raw);
    return start;
  };
}

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

/** Pass 1: the whole file is checked before anything is written. Returns what each column means. */
async function checkFile(file: string, mapping?: ColumnMapping): Promise<Column[]> {
  let columns: Column[] | undefined;
  let rows = 0;
  for await (const { record } of records(file)) {
    if (!columns) {
      const bad = record.findIndex((header) => !isCleanText(header));
      if (bad !== -1) throw new ValidationError([{ field: `header.${bad + 1}`, message: 'contains a NUL character or an unpaired surrogate' }]);
      columns = resolveColumns(record, mapping);
      continue;
    }
    rows += 1;
    if (rows > MAX_ROWS) throw new ValidationError([{ field: 'rows', message: `a file may hold at most ${MAX_ROWS} rows` }]);
  }
  if (!columns) throw new ValidationError([{ field: 'file', message: 'is empty' }]);
  return columns;
}

type ImportRepo = Pick<ContactsQueries, 'upsertImported' | 'recordImportedConsents'>;

export interface ImportOptions {
  /** Sees the normalized address of every row written, once its batch is (a campaign built from a file uses it). */
  onAddress?: (email: string) => void;
  /** Column header → meaning, for an import UI's mapping step; other columns are read by their header. */
  mapping?: ColumnMapping;
  /** Who records the consents (`import:<actor>`) and under which policy version (P-18). */
  consent: { policyVersion: string; actor: string };
  /** Asked before each batch is written; throwing stops the import there (its earlier batches stay). */
  beforeBatch?: () => Promise<void>;
  now?: () => Date;
}

/**
 * The import stopped before its end because its caller may no longer act (`beforeBatch` threw:
 * signed out, removed, a key revoked). Answered with the cause's code and status, and with
 * `details.import`: the report as of the last batch written, whose `rows` are the first rows of
 * the file, every one of them dealt with; nothing after them was written. Importing the same file
 * again finishes it (the rows already written come out unchanged).
 */
export class ImportStoppedError extends AppError {
  constructor(
    cause: AppError,
    readonly written: ImportReport,
  ) {
    super(cause.code, cause.status, `${cause.message}: the import stopped after the first ${written.rows} rows of the file; nothing after them was imported`, { import: written });
  }
}

export async function importContactsCsv(repo: ImportRepo, workspaceId: string, input: Readable, options: ImportOptions): Promise<ImportReport> {
  const { file, cleanup } = await spool(input);
  try {
    const columns = await checkFile(file, options.mapping);
    return await writeRows(repo, workspaceId, file, columns, options);
  } finally {
    await cleanup();
  }
}

/** Pass 2: rows to contacts, batch by batch, letting other requests run in between. */
async function writeRows(repo: ImportRepo, workspaceId: string, file: string, columns: Column[], options: ImportOptions): Promise<ImportReport> {
  const { onAddress } = options;
  const now = options.now ?? (() => new Date());
  const report: ImportReport = { rows: 0, created: 0, updated: 0, unchanged: 0, consents: 0, optOutsKept: 0, failed: 0, errors: [], errorsTruncated: false };
  /** Counts `rows` failed rows (all of one address's, when a batch refuses it) and reports the error once. */
  const fail = (error: ImportRowError, rows = 1) => {
    report.failed += rows;
    if (report.errors.length < MAX_REPORTED_ERRORS) report.errors.push(error);
    else report.errorsTruncated = true;
  };

  // Rows of one batch are keyed by lowercased address: a repeat inside the batch merges into one row.
  let batch = new Map<string, ImportedContact>();
  // Per address of the batch: its rows, and the line of its last one (a refused contact fails
  // them all and is reported once, there).
  let batchRowsOf = new Map<string, { rows: number; line: number }>();
  // The last consent a batch gives each address (a later row about the same person wins).
  let batchConsents = new Map<string, ImportedConsent & { email: string }>();
  let batchRows = 0;
  // The report as of the last batch written (errors are only appended: their count is enough).
  let written = { ...report, errorCount: 0 };
  const stoppedAt = (): ImportReport => {
    const { errorCount, ...counts } = written;
    return { ...counts, errors: report.errors.slice(0, errorCount) };
  };
  const flush = async () => {
    if (batch.size === 0) return;
    try {
      await options.beforeBatch?.();
    } catch (error) {
      if (error instanceof AppError) throw new ImportStoppedError(error, stoppedAt());
      throw error;
    }
    const { created, updated, refused } = await repo.upsertImported(workspaceId, [...batch.values()]);
    report.created += created;
    report.updated += updated;
    let refusedRows = 0;
    for (const email of refused) {
      const key = email.toLowerCase();
      const { rows, line } = batchRowsOf.get(key)!;
      refusedRows += rows;
      batch.delete(key);
      // Its consent column is still recorded: what the person chose is about them, not about the
      // attributes, and an opt-out must never be lost to a problem of another column.
      fail({ line, code: 'too_many_attributes', message: `would give the contact more than ${MAX_CONTACT_ATTRIBUTES} attributes: its fields were not written (a consent it gives was)` }, rows);
    }
    report.unchanged += batchRows - created - updated - refusedRows;
    for (const row of batch.values()) onAddress?.(row.email);
    if (batchConsents.size > 0) {
      const recorded = await repo.recordImportedConsents(workspaceId, [...batchConsents.values()], options.consent);
      report.consents += recorded.appended;
      report.optOutsKept += recorded.optOutsKept;
    }
    batch = new Map();
    batchRowsOf = new Map();
    batchConsents = new Map();
    batchRows = 0;
    written = { ...report, errorCount: report.errors.length };
    await yieldToOthers();
  };

  let header = true;
  const startLine = lineCounter();
  for await (const { record, raw } of records(file)) {
    const line = startLine(raw);
    if (header) {
      header = false;
      continue;
    }
    report.rows += 1;
    if (record.length > columns.length) {
      fail({ line, code: 'malformed_row', message: `has ${record.length} values for ${columns.length} columns` });
      continue;
    }
    const row: ImportedContact = { email: '', attributes: {} };
    const consentCells: { consent?: string; consentSource?: string; consentAt?: string } = {};
    let tooLong: string | undefined;
    let badText: string | undefined;
    record.forEach((value, i) => {
      const column = columns[i]!;
      const name = column.kind === 'attribute' ? column.name : column.kind;
      if (value.length > MAX_VALUE_LENGTH) tooLong ??= name;
      if (!isCleanText(value)) badText ??= column.kind === 'ignore' ? `column ${i + 1}` : name;
      if (value === '' || column.kind === 'ignore') return;
      if (column.kind === 'attribute') row.attributes[column.name] = value;
      else if (column.kind === 'email' || column.kind === 'firstName' || column.kind === 'lastName') row[column.kind] = value;
      else consentCells[column.kind] = value;
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
    const consent = parseConsentCells(consentCells, now());
    if ('error' in consent) {
      fail({ line, ...consent.error });
      continue;
    }
    const key = email.toLowerCase();
    if (consent.consent) batchConsents.set(key, { ...consent.consent, email });
    const earlier = batch.get(key);
    batch.set(key, earlier ? { ...earlier, ...row, email, attributes: { ...earlier.attributes, ...row.attributes } } : { ...row, email });
    batchRowsOf.set(key, { rows: (batchRowsOf.get(key)?.rows ?? 0) + 1, line });
    batchRows += 1;
    if (batch.size >= BATCH_SIZE) await flush();
  }
  await flush();
  return report;
}
