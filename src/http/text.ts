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

/**
 * What one walk of a body found: text PostgreSQL cannot store, or an own `__proto__` key.
 * JSON.parse makes `__proto__` an ordinary key, but zod's records skip it before checking it, so
 * `{"attributes": {"__proto__": …}}` passed as an empty record: the value vanished without a
 * word. It is never a name we accept. Both are found in the walk the text rule makes anyway (a
 * second walk of every body for the key alone cost as much again).
 */
export type BodyProblem = { kind: 'bad_text'; path: string } | { kind: 'proto_key'; path: string };

/**
 * The first problem in a value (strings, keys, nested objects and arrays), or undefined. Throws
 * past MAX_BODY_DEPTH. `path` is the walk's one stack of names, joined only for a hit: copying it
 * for every value made a 1 MB body of numbers nested 62 deep cost ~90 ms, 30× its JSON.stringify.
 */
export function findBodyProblem(value: unknown, path: string[] = []): BodyProblem | undefined {
  const base = path.length;
  const walk = (node: unknown): BodyProblem | undefined => {
    const here = () => (path.length > 0 ? path.join('.') : '(body)');
    if (typeof node === 'string') return isCleanText(node) ? undefined : { kind: 'bad_text', path: here() };
    if (node === null || typeof node !== 'object') return undefined;
    if (path.length - base >= MAX_BODY_DEPTH) throw new ValidationError([{ field: here(), message: `is nested more than ${MAX_BODY_DEPTH} levels deep` }]);
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i += 1) {
        const child = node[i];
        if (child === null || (typeof child !== 'object' && typeof child !== 'string')) continue;
        path.push(String(i));
        const found = walk(child);
        path.pop();
        if (found) return found;
      }
      return undefined;
    }
    for (const key of Object.keys(node)) {
      // A bad key is named by its position, never echoed (it is the bad text itself).
      if (!isCleanText(key)) return { kind: 'bad_text', path: [...path, '(key)'].join('.') };
      if (key === '__proto__') return { kind: 'proto_key', path: [...path, key].join('.') };
      path.push(key);
      const found = walk((node as Record<string, unknown>)[key]);
      path.pop();
      if (found) return found;
    }
    return undefined;
  };
  try {
    return walk(value);
  } finally {
    path.length = base;
  }
}

/** Throws the 400 a problem of a client's input answers. */
function refuse(problem: BodyProblem): never {
  if (problem.kind === 'bad_text') throw new InvalidTextError(problem.path);
  throw protoKeyRefused(problem.path);
}

const protoKeyRefused = (field: string) => new ValidationError([{ field, message: '__proto__ is not accepted as a name' }]);

/**
 * Whether a form field's name is one we accept: not `__proto__` (see BodyProblem), the rule of
 * JSON and urlencoded bodies, for the form readers that take a body apart themselves (multipart,
 * plain text). An object built from such a form dropped the field without a word (assigning a
 * string to `__proto__` does nothing). `constructor` and `prototype` are left as ordinary names:
 * they become own keys (of a Map, or of a plain object) and change nothing, and JSON takes them.
 */
export const isAcceptedFieldName = (name: string): boolean => name !== '__proto__';

/** A form field's name: 400 `validation_failed` naming it, as the same key in a JSON or urlencoded body (isAcceptedFieldName). */
export function assertAcceptedFieldName(name: string): void {
  if (!isAcceptedFieldName(name)) throw protoKeyRefused(name);
}

/** For one string a reader takes apart itself (a CSV cell, a multipart field): 400 `invalid_text` naming `field`. */
export function assertCleanText(text: string, field: string): void {
  if (!isCleanText(text)) throw new InvalidTextError(field);
}

/**
 * Runs after the body parsers: the query string and the parsed body, before any route.
 * `except`: requests a route reads leniently itself (the one-click opt-out: a stray bad field
 * beside `List-Unsubscribe=One-Click` must not lose the opt-out; http/form-body.ts skips it).
 */
export function rejectBadText(options: { except?: (req: Request) => boolean } = {}): RequestHandler {
  return (req, _res, next) => {
    if (options.except?.(req)) return next();
    const inQuery = findBodyProblem(req.query, ['query']);
    if (inQuery) refuse(inQuery);
    const inBody = findBodyProblem(req.body);
    if (inBody) refuse(inBody);
    next();
  };
}
