import type { Request, RequestHandler } from 'express';
import { InvalidTextError, ValidationError } from '../errors.js';

/**
 * Text PostgreSQL cannot store (U+0000) or that is not Unicode at all (a UTF-16 surrogate
 * without its pair) is refused at the edge with one answer, `400 invalid_text`, instead of
 * failing deep inside a query. Every string a client sends passes through here: JSON and
 * form bodies, query strings (middleware below) and CSV cells (the importer calls
 * `assertCleanText` per cell).
 */
const BAD_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const isCleanText = (text: string): boolean => !BAD_TEXT.test(text);

/**
 * No body of ours nests deeper than this. Deeper is refused (400), not walked: left unchecked it
 * would hide bad text, and code that walks a body by recursion (a hash of it, a serializer)
 * overflowed the stack on a few kilobytes of brackets (a 500).
 */
export const MAX_BODY_DEPTH = 64;

/** The path of the first string (value or key) holding bad text, or undefined when all are clean. Throws past MAX_BODY_DEPTH. */
export function findBadText(value: unknown, path: string[] = [], depth = 0): string | undefined {
  const here = () => (path.length > 0 ? path.join('.') : '(body)');
  if (typeof value === 'string') return isCleanText(value) ? undefined : here();
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= MAX_BODY_DEPTH) throw new ValidationError([{ field: here(), message: `is nested more than ${MAX_BODY_DEPTH} levels deep` }]);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      const found = findBadText(value[i], [...path, String(i)], depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [key, child] of Object.entries(value)) {
    // A bad key is named by its position, never echoed (it is the bad text itself).
    if (!isCleanText(key)) return [...path, '(key)'].join('.');
    const found = findBadText(child, [...path, key], depth + 1);
    if (found) return found;
  }
  return undefined;
}

export function assertCleanText(value: unknown, field: string): void {
  const found = findBadText(value, field ? [field] : []);
  if (found) throw new InvalidTextError(found);
}

/**
 * Runs after the body parsers: the query string and the parsed body, before any route.
 * `except`: requests a route reads leniently itself (the one-click opt-out: a stray bad field
 * beside `List-Unsubscribe=One-Click` must not lose the opt-out; http/form-body.ts skips it).
 */
export function rejectBadText(options: { except?: (req: Request) => boolean } = {}): RequestHandler {
  return (req, _res, next) => {
    if (options.except?.(req)) return next();
    const inQuery = findBadText(req.query, ['query']);
    if (inQuery) throw new InvalidTextError(inQuery);
    const inBody = findBadText(req.body);
    if (inBody) throw new InvalidTextError(inBody);
    next();
  };
}
