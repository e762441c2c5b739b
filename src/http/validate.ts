import { z } from 'zod';
import { ValidationError } from '../errors.js';

/** Parses request input against a schema, or throws a 400 naming every bad field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(
    result.error.issues.map((issue) => ({
      field: issue.path.length > 0 ? issue.path.join('.') : '(body)',
      message: issue.message,
    })),
  );
}

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
