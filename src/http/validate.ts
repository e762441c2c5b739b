import { z } from 'zod';
import { ValidationError } from '../errors.js';

/** At most this many problems are named in one answer: a 300 KB array of bad items made a 15 MB error. */
const MAX_ISSUES = 20;

/** The field an issue is about: its path, the keys it names when they are unknown, or the input as a whole. */
function fieldOf(issue: z.core.$ZodIssue, where: string): string {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys' && issue.keys.length > 0) return [...path, issue.keys.join(', ')].join('.');
  return path.length > 0 ? path.join('.') : where;
}

/**
 * Parses request input against a schema, or throws a 400 naming the bad fields (the first
 * MAX_ISSUES, then how many more). `where`: what the input is, named when a problem is with the
 * whole of it.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, where: '(body)' | '(query)' = '(body)'): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const { issues } = result.error;
  const named = issues.slice(0, MAX_ISSUES).map((issue) => ({ field: fieldOf(issue, where), message: issue.message }));
  if (issues.length > MAX_ISSUES) named.push({ field: where, message: `and ${issues.length - MAX_ISSUES} more problems` });
  throw new ValidationError(named);
}

/**
 * An id a client sends: a UUID in any case, lowercased as PostgreSQL prints it, so that two
 * spellings of one id compare equal in our code too (a self-grant in capitals passed the
 * self check; an audience naming one contact in both cases was refused as unknown ids).
 */
export const entityId = z.uuid().transform((id) => id.toLowerCase());

/**
 * An ISO 8601 instant with its offset, inside years 1970–9999. JavaScript accepts
 * `+275760-09-13` and year 0; PostgreSQL does not, and must never be the one to say so.
 */
export const isoInstant = z.iso
  .datetime({ offset: true })
  .transform((value) => new Date(value))
  .refine((date) => !Number.isNaN(date.getTime()) && date.getUTCFullYear() >= 1970 && date.getUTCFullYear() <= 9999, 'must be between 1970 and 9999');

const calendarDay = z.iso.date();

/**
 * The start (UTC) of a calendar day written YYYY-MM-DD, or undefined when there is no such day:
 * JavaScript's Date rolls 2026-02-30 over to 2 March and makes 2026-13-45 an invalid date that
 * throws on toISOString(), so a day is checked against the calendar before it becomes a Date.
 */
export function startOfCalendarDay(text: string): Date | undefined {
  return calendarDay.safeParse(text).success ? new Date(`${text}T00:00:00Z`) : undefined;
}
