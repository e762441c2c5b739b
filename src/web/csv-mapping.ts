import { parse } from 'csv-parse/sync';
import { headerToFieldName } from '../contacts/contacts-import.js';
import { ValidationError } from '../errors.js';

/**
 * The column-mapping step of the web import: what each CSV column means. The choices and the
 * mapping's shape (header → target, attributes as `attribute:<name>`) are the import
 * service's own (`ColumnMapping`, arriving with branch api-keys), so the page can hand the
 * mapping to `contacts.importCsv` as soon as the service takes one.
 */
export const COLUMN_TARGETS = ['email', 'firstName', 'lastName', 'consent', 'consentSource', 'consentAt', 'attribute', 'ignore'] as const;
export type ColumnChoice = (typeof COLUMN_TARGETS)[number];
export type ColumnTarget = Exclude<ColumnChoice, 'attribute'> | `attribute:${string}`;
export type ColumnMapping = Record<string, ColumnTarget>;

export const TARGET_LABELS: Record<ColumnChoice, string> = {
  email: 'Email',
  firstName: 'First name',
  lastName: 'Last name',
  consent: 'Consent (opted_in / opted_out)',
  consentSource: 'Consent source',
  consentAt: 'Consent date',
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
export function guessChoice(header: string): ColumnChoice {
  const name = headerToFieldName(header);
  if (name === 'email' || name === 'firstName' || name === 'lastName' || name === 'consent' || name === 'consentSource' || name === 'consentAt') return name;
  return name ? 'attribute' : 'ignore';
}

/** The attribute name a column becomes (a merge field in templates: letters, digits, _). */
export const attributeName = (header: string) => headerToFieldName(header).replace(/[^A-Za-z0-9_]/g, '') || 'column';

/** The person's choices, one per column, as the service's mapping. */
export function toMapping(header: string[], choices: ColumnChoice[]): ColumnMapping {
  return Object.fromEntries(header.map((h, i) => [h, choices[i] === 'attribute' ? (`attribute:${attributeName(h)}` as const) : choices[i]!]));
}

const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;

/** A row's consent cells, for recording consent beside the import (see import.pages.ts). */
export interface ConsentCells {
  line: number;
  email: string;
  consent: string;
  source?: string;
}

/**
 * Applies a mapping without the service's help: a CSV with the service's default headers and
 * only the mapped columns, plus each row's consent cells (recorded apart, see import.pages.ts).
 */
export function applyMapping(csv: ParsedCsv, mapping: ColumnMapping): { csv: string; consents: ConsentCells[] } {
  const targets = csv.header.map((h) => mapping[h] ?? 'ignore');
  const emailColumn = targets.indexOf('email');
  if (emailColumn === -1) throw new ValidationError([{ field: 'mapping', message: 'one column must be the email address' }]);
  const duplicated = (['email', 'firstName', 'lastName', 'consent', 'consentSource', 'consentAt'] as const).find((t) => targets.filter((m) => m === t).length > 1);
  if (duplicated) throw new ValidationError([{ field: 'mapping', message: `only one column can be ${TARGET_LABELS[duplicated]}` }]);

  const kept = targets.flatMap((target, index) => (target === 'email' || target === 'firstName' || target === 'lastName' || target.startsWith('attribute:') ? [index] : []));
  const headerOf = (index: number) => targets[index]!.replace(/^attribute:/, '');
  const lines = [kept.map((i) => quote(headerOf(i))).join(',')];
  const consentColumn = targets.indexOf('consent');
  const sourceColumn = targets.indexOf('consentSource');
  const consents: ConsentCells[] = [];
  csv.rows.forEach((row, r) => {
    lines.push(kept.map((i) => quote(row[i] ?? '')).join(','));
    const consent = consentColumn === -1 ? '' : (row[consentColumn] ?? '');
    if (consent) consents.push({ line: r + 2, email: row[emailColumn] ?? '', consent, source: sourceColumn === -1 ? undefined : row[sourceColumn] || undefined });
  });
  return { csv: `${lines.join('\n')}\n`, consents };
}
