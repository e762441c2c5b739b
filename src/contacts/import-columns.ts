import { ValidationError } from '../errors.js';
import { startOfCalendarDay } from '../http/validate.js';
import type { ConsentStatus } from '../db/schema.js';
import { MAX_CONTACT_ATTRIBUTES } from './contact-columns.js';

/*
 * What each CSV column means. By default the header says it ("E-mail" → email, "First Name"
 * → firstName, "consent_source" → consentSource, anything else an attribute); an import UI
 * may pass an explicit mapping instead, column header → target.
 */

export type ColumnTarget = 'email' | 'firstName' | 'lastName' | 'consent' | 'consentSource' | 'consentAt' | 'ignore' | `attribute:${string}`;
export type ColumnMapping = Record<string, ColumnTarget>;

export type Column =
  | { kind: 'email' | 'firstName' | 'lastName' | 'consent' | 'consentSource' | 'consentAt' | 'ignore' }
  | { kind: 'attribute'; name: string };

const OWN_FIELDS = ['email', 'firstName', 'lastName', 'consent', 'consentSource', 'consentAt'] as const;
type OwnField = (typeof OWN_FIELDS)[number];
/** Attribute names double as merge-field names in templates ({{companyName}}): identifiers. The API's rule too (contacts.routes.ts). */
export const ATTRIBUTE_NAME = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const ATTRIBUTE_NAME_RULE = 'letters, digits and _, not starting with a digit, at most 64, not __proto__';

/** Header spellings (lowercased, separators removed) that mean one of the contact's own fields. */
const FIELD_ALIASES: Record<string, OwnField> = {
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
  consent: 'consent',
  consentsource: 'consentSource',
  consentat: 'consentAt',
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

function byHeader(header: string): Column {
  const name = headerToFieldName(header);
  if (!name) return { kind: 'ignore' };
  if ((OWN_FIELDS as readonly string[]).includes(name)) return { kind: name as OwnField };
  // The same rule as an attribute named through the API or a mapping: one the API could not set
  // back, nor a segment or a merge field name, is refused here rather than stored (or dropped).
  if (!ATTRIBUTE_NAME.test(name)) {
    throw new ValidationError([{ field: 'header', message: `column ${JSON.stringify(header)} makes no attribute name (${ATTRIBUTE_NAME_RULE}): rename it, or map it to an attribute or to ignore` }]);
  }
  return { kind: 'attribute', name };
}

function byMapping(header: string, target: ColumnTarget): Column {
  if (target.startsWith('attribute:')) {
    const name = target.slice('attribute:'.length);
    if (!ATTRIBUTE_NAME.test(name)) throw new ValidationError([{ field: `mapping.${header}`, message: `attribute names are ${ATTRIBUTE_NAME_RULE}` }]);
    return { kind: 'attribute', name };
  }
  if (target === 'ignore' || (OWN_FIELDS as readonly string[]).includes(target)) return { kind: target as OwnField | 'ignore' };
  throw new ValidationError([{ field: `mapping.${header}`, message: `unknown target ${JSON.stringify(target)}` }]);
}

/** The meaning of each column; the file must have exactly one email column, and at most one of each consent column. */
export function resolveColumns(headers: string[], mapping?: ColumnMapping): Column[] {
  const columns = headers.map((header) => (mapping && Object.hasOwn(mapping, header) ? byMapping(header, mapping[header]!) : byHeader(header)));
  const count = (kind: Column['kind']) => columns.filter((c) => c.kind === kind).length;
  if (count('email') !== 1) throw new ValidationError([{ field: 'header', message: 'the first line must name the columns, exactly one of them "email"' }]);
  for (const kind of ['consent', 'consentSource', 'consentAt'] as const) {
    if (count(kind) > 1) throw new ValidationError([{ field: 'header', message: `more than one ${kind} column` }]);
  }
  if ((count('consentSource') > 0 || count('consentAt') > 0) && count('consent') === 0) {
    throw new ValidationError([{ field: 'header', message: 'consent_source and consent_at need a consent column' }]);
  }
  // Two columns into one attribute ("Company Name" and "company_name"): one would overwrite the other, row by row.
  const firstHeaderOf = new Map<string, string>();
  columns.forEach((column, i) => {
    if (column.kind !== 'attribute') return;
    const earlier = firstHeaderOf.get(column.name);
    if (earlier !== undefined) {
      throw new ValidationError([{ field: 'header', message: `columns ${JSON.stringify(earlier)} and ${JSON.stringify(headers[i])} are both the attribute ${column.name}: rename or map one of them` }]);
    }
    firstHeaderOf.set(column.name, headers[i]!);
  });
  if (firstHeaderOf.size > MAX_CONTACT_ATTRIBUTES) {
    throw new ValidationError([{ field: 'header', message: `${firstHeaderOf.size} attribute columns: a contact holds at most ${MAX_CONTACT_ATTRIBUTES} (map the others to "ignore")` }]);
  }
  return columns;
}

export interface ImportedConsent {
  status: ConsentStatus;
  source: string;
  /** When the person gave or withdrew it; null: now. */
  at: Date | null;
}

export const DEFAULT_CONSENT_SOURCE = 'csv import';
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/;
/** A recorded consent may not claim to come from the future (a little clock skew aside). */
const FUTURE_SLACK_MS = 5 * 60 * 1000;

/** The consent cells of one row → a consent to record, none, or why the row fails. */
export function parseConsentCells(
  cells: { consent?: string; consentSource?: string; consentAt?: string },
  now: Date,
): { consent: ImportedConsent | null } | { error: { code: 'invalid_consent' | 'invalid_consent_at'; message: string } } {
  const status = cells.consent?.toLowerCase();
  if (!status) {
    if (cells.consentSource || cells.consentAt) return { error: { code: 'invalid_consent', message: 'consent_source or consent_at given without consent' } };
    return { consent: null };
  }
  if (status !== 'opted_in' && status !== 'opted_out') return { error: { code: 'invalid_consent', message: 'consent must be opted_in or opted_out' } };
  let at: Date | null = null;
  if (cells.consentAt) {
    const text = cells.consentAt;
    // The day checked against the calendar first: Date would roll 2026-02-30 over to 2 March.
    const day = DATE_ONLY.test(text) || INSTANT.test(text) ? startOfCalendarDay(text.slice(0, 10)) : undefined;
    at = !day ? new Date(Number.NaN) : DATE_ONLY.test(text) ? day : new Date(text);
    if (Number.isNaN(at.getTime()) || at.getUTCFullYear() < 1970 || at.getTime() > now.getTime() + FUTURE_SLACK_MS) {
      return { error: { code: 'invalid_consent_at', message: 'consent_at must be a past date (YYYY-MM-DD) or instant with offset (ISO 8601)' } };
    }
  }
  return { consent: { status, source: cells.consentSource || DEFAULT_CONSENT_SOURCE, at } };
}
