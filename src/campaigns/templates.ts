import { compile } from 'html-to-text';
import { escapeHtml } from '../web/html.js';

/*
 * Merge fields: {{firstName}}, {{firstName | "there"}} (a default when the contact has no
 * value), and any contact attribute ({{companyName}}). Templates are checked when a
 * campaign is saved, so a typo is a 422 naming the field, not a blank in 10,000 mails.
 */

const FIELD = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*"((?:[^"\\]|\\.)*)"\s*)?\}\}/g;
/** Anything that opens a merge field but does not parse as one. */
const MALFORMED = /\{\{(?![^{}]*\}\})|\{\{\s*(?![A-Za-z_][A-Za-z0-9_]*\s*(?:\|\s*"(?:[^"\\]|\\.)*"\s*)?\}\})[^}]*\}\}/;

export const BUILT_IN_FIELDS = ['email', 'firstName', 'lastName'] as const;

export interface MergeContact {
  email: string;
  firstName: string | null;
  lastName: string | null;
  attributes: Record<string, unknown>;
}

/** The merge fields a template uses, in order of first use. */
export function mergeFieldsOf(template: string): string[] {
  return [...new Set([...template.matchAll(FIELD)].map((m) => m[1]!))];
}

export interface TemplateProblem {
  field: string;
  message: string;
}

/** Problems with a template: malformed braces, or fields that are neither built in nor a known attribute. */
export function checkTemplate(template: string, knownAttributes: ReadonlySet<string>): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  const malformed = MALFORMED.exec(template);
  if (malformed) problems.push({ field: malformed[0].slice(0, 40), message: 'is not a merge field: write {{name}} or {{name | "default"}}' });
  for (const field of mergeFieldsOf(template)) {
    if (!(BUILT_IN_FIELDS as readonly string[]).includes(field) && !knownAttributes.has(field)) {
      problems.push({ field, message: 'is not a contact field or an attribute any contact has' });
    }
  }
  return problems;
}

function valueOf(contact: MergeContact, field: string): string {
  // An attribute only if the contact has it: `{{constructor}}` must not find what every object inherits.
  const attribute = Object.hasOwn(contact.attributes, field) ? contact.attributes[field] : undefined;
  const raw = field === 'email' ? contact.email : field === 'firstName' ? contact.firstName : field === 'lastName' ? contact.lastName : attribute;
  return raw === null || raw === undefined ? '' : String(raw);
}

/** Fills a template for one contact. In HTML every value is escaped: a contact's name never becomes markup. */
export function renderTemplate(template: string, contact: MergeContact, mode: 'html' | 'text'): string {
  return template.replace(FIELD, (_match, field: string, fallback: string | undefined) => {
    const value = valueOf(contact, field) || (fallback?.replace(/\\(.)/g, '$1') ?? '');
    return mode === 'html' ? escapeHtml(value) : value;
  });
}

/**
 * The converter's options compiled once: `convert` compiles them again on every call, which
 * was most of its cost per message in the send pipeline's profile (BENCHMARKS.md, issue #14).
 */
const toText = compile({ wordwrap: 78, selectors: [{ selector: 'img', format: 'skip' }] });

/** The text alternative of an HTML body, links kept as "text [url]". */
export function htmlToText(html: string): string {
  return toText(html);
}
