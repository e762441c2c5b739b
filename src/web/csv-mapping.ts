import { parse } from 'csv-parse/sync';
import { headerToFieldName } from '../contacts/contacts-import.js';
import { ValidationError } from '../errors.js';

/**
 * The column-mapping step of the web import: what each CSV column means. The names follow
 * the import service's documented columns (`email`, `firstName`, `lastName`, `consent`,
 * `consent_source`, `consent_at`, any other → an attribute), so a mapped file is simply
 * rewritten with those headers.
 */
export const COLUMN_TARGETS = ['email', 'firstName', 'lastName', 'consent', 'consent_source', 'consent_at', 'attribute', 'ignore'] as const;
export type ColumnTarget = (typeof COLUMN_TARGETS)[number];

export const TARGET_LABELS: Record<ColumnTarget, string> = {
  email: 'Email',
  firstName: 'First name',
  lastName: 'Last name',
  consent: 'Consent (opted_in / opted_out)',
  consent_source: 'Consent source',
  consent_at: 'Consent date',
  attribute: 'Attribute',
  ignore: 'Ignore',
};

const PARSE_OPTIONS = { bom: true, skip_empty_lines: true, trim: true, relax_column_count: true } as const;

export interface ParsedCsv {
  header: string[];
  rows: string[][];
}

export function parseCsvText(text: string): ParsedCsv {
  let records: string[][];
  try {
    records = parse(text, PARSE_OPTIONS) as string[][];
  } catch {
    throw new ValidationError([{ field: 'file', message: 'is not readable as CSV' }]);
  }
  const [header, ...rows] = records;
  if (!header || header.length === 0) throw new ValidationError([{ field: 'file', message: 'is empty' }]);
  return { header, rows };
}

/** The first guess shown in the mapping step: the service's own header rules. */
export function guessTarget(header: string): ColumnTarget {
  const name = headerToFieldName(header);
  if (name === 'email' || name === 'firstName' || name === 'lastName' || name === 'consent') return name;
  if (name === 'consentSource') return 'consent_source';
  if (name === 'consentAt' || name === 'consentDate') return 'consent_at';
  return name ? 'attribute' : 'ignore';
}

/** The attribute name a column becomes (a merge field in templates: letters, digits, _). */
export const attributeName = (header: string) => headerToFieldName(header).replace(/[^A-Za-z0-9_]/g, '') || 'column';

const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;

/** A row's consent cells, for recording consent beside the import (see import.pages.ts). */
export interface ConsentCells {
  line: number;
  email: string;
  consent: string;
  source?: string;
}

/**
 * Applies a mapping: a CSV with the service's headers and only the mapped columns, plus
 * each row's consent cells (kept apart: see import.pages.ts for why).
 */
export function applyMapping(csv: ParsedCsv, mapping: ColumnTarget[]): { csv: string; consents: ConsentCells[] } {
  const emailColumn = mapping.indexOf('email');
  if (emailColumn === -1) throw new ValidationError([{ field: 'mapping', message: 'one column must be the email address' }]);
  const duplicated = (['email', 'firstName', 'lastName', 'consent', 'consent_source', 'consent_at'] as const).find((t) => mapping.filter((m) => m === t).length > 1);
  if (duplicated) throw new ValidationError([{ field: 'mapping', message: `only one column can be ${TARGET_LABELS[duplicated]}` }]);

  const kept = mapping.flatMap((target, index) => (target === 'email' || target === 'firstName' || target === 'lastName' || target === 'attribute' ? [index] : []));
  const headerOf = (index: number) => (mapping[index] === 'attribute' ? attributeName(csv.header[index]!) : mapping[index]!);
  const lines = [kept.map((i) => quote(headerOf(i))).join(',')];
  const consentColumn = mapping.indexOf('consent');
  const sourceColumn = mapping.indexOf('consent_source');
  const consents: ConsentCells[] = [];
  csv.rows.forEach((row, r) => {
    lines.push(kept.map((i) => quote(row[i] ?? '')).join(','));
    const consent = consentColumn === -1 ? '' : (row[consentColumn] ?? '');
    if (consent) consents.push({ line: r + 2, email: row[emailColumn] ?? '', consent, source: sourceColumn === -1 ? undefined : row[sourceColumn] || undefined });
  });
  return { csv: `${lines.join('\n')}\n`, consents };
}
