import { z } from 'zod';
import { ValidationError } from '../errors.js';

/** At most this many problems are named in one answer: a 300 KB array of bad items made a 15 MB error. */
const MAX_ISSUES = 20;

/**
 * Where in the input an own `__proto__` key sits, or undefined. JSON.parse makes it an ordinary
 * key, but zod's records skip it before checking it, so `{"attributes": {"__proto__": …}}`
 * passed as an empty record: the value vanished without a word. It is never a name we accept.
 */
function protoKeyPath(input: unknown): string | undefined {
  // Objects only, each with a link to its parent: the path is built for a hit alone (copying it
  // for every value made a 1 MB body cost seconds, before any schema refused it).
  interface Visit { value: object; key: string; parent?: Visit }
  const stack: Visit[] = [];
  const visit = (value: unknown, key: string, parent?: Visit) => {
    if (value !== null && typeof value === 'object') stack.push({ value, key, parent });
  };
  visit(input, '');
  while (stack.length > 0) {
    const at = stack.pop()!;
    if (Object.hasOwn(at.value, '__proto__')) {
      const path = ['__proto__'];
      for (let v: Visit | undefined = at; v?.parent; v = v.parent) path.unshift(v.key);
      return path.join('.');
    }
    if (Array.isArray(at.value)) at.value.forEach((child, index) => visit(child, String(index), at));
    else for (const key in at.value) visit((at.value as Record<string, unknown>)[key], key, at);
  }
  return undefined;
}

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
  const protoKey = protoKeyPath(input);
  if (protoKey) throw new ValidationError([{ field: protoKey, message: '__proto__ is not accepted as a name' }]);
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
