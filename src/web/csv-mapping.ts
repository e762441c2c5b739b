import { parse } from 'csv-parse/sync';
import { headerToFieldName } from '../contacts/contacts-import.js';
import type { ColumnMapping } from '../contacts/import-columns.js';
import { ValidationError } from '../errors.js';

export type { ColumnMapping };

/**
 * The column-mapping step of the web import: what each CSV column means. The choices and the
 * mapping's shape (header → target, attributes as `attribute:<name>`) are the import
 * service's own (`ColumnMapping` in contacts/import-columns.ts): the page hands the mapping
 * to `contacts.importCsv`, which applies it and records the consent columns.
 */
export const COLUMN_TARGETS = ['email', 'firstName', 'lastName', 'consent', 'consentSource', 'consentAt', 'attribute', 'ignore'] as const;
export type ColumnChoice = (typeof COLUMN_TARGETS)[number];


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

/**
 * The attribute name a column becomes, one the service takes (a merge field in templates:
 * letters, digits, _, not starting with a digit, at most 64): `2024 Revenue` → `_2024Revenue`.
 */
export const attributeName = (header: string) => {
  const name = headerToFieldName(header).replace(/[^A-Za-z0-9_]/g, '') || 'column';
  return (/^[0-9]/.test(name) ? `_${name}` : name).slice(0, 64);
};

/** The person's choices, one per column, as the service's mapping. */
export function toMapping(header: string[], choices: ColumnChoice[]): ColumnMapping {
  return Object.fromEntries(header.map((h, i) => [h, choices[i] === 'attribute' ? (`attribute:${attributeName(h)}` as const) : choices[i]!]));
}
