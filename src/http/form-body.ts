import type { IncomingMessage } from 'node:http';
import type { Request } from 'express';
import { AppError, UnsupportedMediaTypeError, ValidationError } from '../errors.js';
import { parseMultipartFields } from './multipart.js';
import { assertAcceptedFieldName, assertCleanText, isAcceptedFieldName, isCleanText } from './text.js';

/** A submitted HTML form: each field name with every value it was given, in order. */
export type FormFields = Map<string, string[]>;

/** RFC 8058 bodies are one short field; a page's form a few dozen. Anything bigger is not ours. */
export const MAX_MULTIPART_BYTES = 64 * 1024;

const FORM_TYPES = ['application/x-www-form-urlencoded', 'multipart/form-data'];

/**
 * Reads a form posted as `application/x-www-form-urlencoded` (already parsed by the app's
 * body parser) or `multipart/form-data` (RFC 8058 allows both; some mail providers send
 * the latter). Multipart is read up to a bound and parsed by our own lenient reader
 * (http/multipart.ts: undici's refuses valid bodies some clients send). Files are ignored.
 */
export async function readFormFields(req: Request, options: { oneClick?: boolean } = {}): Promise<FormFields> {
  const empty = !req.headers['content-type'] && !req.headers['transfer-encoding'] && Number(req.headers['content-length'] ?? 0) === 0;
  if (empty) return new Map();
  if (options.oneClick && (!req.headers['content-type'] || req.is('text/plain'))) return parsePlainText(req);
  const kind = req.is(FORM_TYPES);
  if (kind === null) return new Map();
  if (kind === false) throw new UnsupportedMediaTypeError(FORM_TYPES.join(' or '));
  // One-click (RFC 8058): a field that breaks the text rule is skipped, not the whole body (as
  // for plain text below): only `List-Unsubscribe=One-Click` matters, and a lost opt-out is worse.
  const add = options.oneClick ? addCleanField : addField;
  if (kind === 'multipart/form-data') return parseMultipart(req, add);
  // The app's parser reads only UTF-8 and ISO-8859-1 forms (isAppReadableForm); another charset is read here.
  if (req.body === undefined) return parseUrlencoded(req, add);
  return fromParsedBody(req.body, add);
}

/** A field that breaks the text rule, or has a name we never accept, is left out (one-click: see readFormFields). */
function addCleanField(fields: FormFields, name: string, value: string): void {
  if (isCleanText(name) && isCleanText(value) && isAcceptedFieldName(name)) addField(fields, name, value);
}

/**
 * Whether the app's urlencoded parser (http/express-app.ts) should read this body: a form in
 * the charsets it knows (UTF-8, ISO-8859-1, or none named). It answers any other with a 415
 * before a route runs, and an RFC 8058 client naming `us-ascii` or `windows-1252` would lose its
 * opt-out to that, so such a body is left unread for readFormFields.
 */
export function isAppReadableForm(req: IncomingMessage): boolean {
  const contentType = req.headers['content-type'] ?? '';
  if (!/^\s*application\/x-www-form-urlencoded\s*(;|$)/i.test(contentType)) return false;
  const charset = charsetOf(contentType);
  return charset === undefined || charset === 'utf-8' || charset === 'iso-8859-1';
}

/**
 * The app's urlencoded parsers' `verify` (express-app.ts, the web app's forms): their parser (qs)
 * drops a field named `__proto__` without a word, so the raw body is looked at first and such a
 * field answered as in every other body (http/text.ts isAcceptedFieldName: 400 `validation_failed`).
 * Names are compared as the parser reads them: decoded (`%5F%5Fproto%5F%5F` is the same field)
 * and without one pair of wrapping brackets (`[__proto__]` too); `__proto__[a]` and
 * `[[__proto__]]` are kept by the parser as those names, ordinary ones.
 */
export function refuseUnacceptedFieldNames(req: IncomingMessage, _res: unknown, body: Buffer): void {
  // One-click reads its form leniently (readFormFields `oneClick`): the field is skipped there, and the opt-out goes through.
  if (isOneClickPath((req.url ?? '').split('?')[0]!)) return;
  for (const pair of body.toString('latin1').split('&')) {
    const end = pair.indexOf('=');
    const raw = (end < 0 ? pair : pair.slice(0, end)).replace(/\+/g, ' ');
    if (!raw.includes('proto') && !raw.includes('%')) continue;
    let name = raw;
    try {
      name = decodeURIComponent(raw);
    } catch {
      // Not UTF-8 percent-encoding: the parser reads it another way, never as `__proto__`.
    }
    // qs keeps a key whole here (depth 0) but strips one pair of wrapping brackets from it
    // (stripWrappingBrackets): `[__proto__]` is read, and dropped, as `__proto__`.
    assertAcceptedFieldName(name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name);
  }
}

/** The one-click opt-out's path (`POST /u/:token`, suppression/unsubscribe.routes.ts; routes match in any case). */
export const isOneClickPath = (path: string) => /^\/u\/[^/]+\/?$/i.test(path);

/** The signed-in web app's paths, whose forms its own router reads (web.routes.ts). */
export const isWebAppPath = (url: string | undefined) => /^\/app(\/|\?|$)/.test(url ?? '');

/** A urlencoded body in another charset (isAppReadableForm): decoded by its label, then read as a form. */
async function parseUrlencoded(req: Request, add: AddField): Promise<FormFields> {
  const text = decodePlainText(await readBodyUpTo(req, MAX_MULTIPART_BYTES), charsetOf(req.headers['content-type']));
  const fields: FormFields = new Map();
  for (const [name, value] of new URLSearchParams(text)) add(fields, name, value);
  return fields;
}

/**
 * A body in the browser's `text/plain` form encoding (`name=value`, one field a line), or with
 * no content type at all: RFC 8058 names the two form types, but a client that sends
 * `List-Unsubscribe=One-Click` as plain text still means it, and a lost opt-out is worse than a
 * lenient parser. Read up to the multipart bound, in the charset it names (or its byte-order
 * mark says: UTF-16 from some clients), UTF-8 otherwise. A line that breaks the text rule
 * (http/text.ts) is skipped, not the whole body: only the One-Click line matters here, and a
 * stray control character elsewhere must not lose it.
 */
async function parsePlainText(req: Request): Promise<FormFields> {
  const text = decodePlainText(await readBodyUpTo(req, MAX_MULTIPART_BYTES), charsetOf(req.headers['content-type']));
  const fields: FormFields = new Map();
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf('=');
    if (at <= 0 || !isCleanText(line)) continue;
    addField(fields, line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

/** The `charset` parameter of a content type, lowercased; undefined when none is named. */
function charsetOf(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '');
  return match?.[1]?.toLowerCase();
}

/**
 * Bytes as text: a byte-order mark wins (it is what the bytes are), then the named charset,
 * then UTF-8. A charset TextDecoder does not know is a 415: we cannot read what was meant.
 * (TextDecoder reads `us-ascii` as windows-1252, its superset.)
 */
function decodePlainText(body: Buffer, charset: string | undefined): string {
  const bom = body[0] === 0xff && body[1] === 0xfe ? 'utf-16le' : body[0] === 0xfe && body[1] === 0xff ? 'utf-16be' : undefined;
  const label = bom ?? charset ?? 'utf-8';
  try {
    return new TextDecoder(label).decode(body);
  } catch {
    throw new UnsupportedMediaTypeError('text/plain in a known charset (UTF-8, UTF-16, ISO-8859-1)');
  }
}

/**
 * One field of a body this module parses itself (not the app's parsers): the same edge rules as
 * every other body (http/text.ts: the text, and no `__proto__` name), then appended to the values of its name.
 */
function addField(fields: FormFields, name: string, value: string): void {
  assertCleanText(name, '(field name)');
  assertAcceptedFieldName(name);
  assertCleanText(value, name);
  fields.set(name, [...(fields.get(name) ?? []), value]);
}

type AddField = (fields: FormFields, name: string, value: string) => void;

/** The app's parsed urlencoded body (its text rule already applied to it, except for one-click: http/text.ts). */
function fromParsedBody(body: unknown, add: AddField): FormFields {
  const fields: FormFields = new Map();
  if (body === undefined || body === null) return fields;
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (typeof value === 'string') add(fields, name, value);
    else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) for (const v of value as string[]) add(fields, name, v);
    else throw new ValidationError([{ field: name, message: 'is not a plain form field' }]);
  }
  return fields;
}

/**
 * A multipart/form-data body read up to `limit` bytes and parsed by the platform's FormData
 * parser: 413 past the limit, 400 when it is not multipart. Files are in it as File objects;
 * callers apply the text rule (http/text.ts) to what they keep. The web app's uploads use it (our
 * own browser pages post them); the recipient's pages use the lenient reader (parseMultipart).
 */
export async function readMultipartForm(req: Request, limit: number): Promise<FormData> {
  const body = await readBodyUpTo(req, limit);
  try {
    return await new Response(body, { headers: { 'content-type': req.headers['content-type']! } }).formData();
  } catch {
    throw new ValidationError([{ field: '(body)', message: 'is not a readable multipart/form-data body' }]);
  }
}

/**
 * A recipient page's multipart body, read by our lenient parser (http/multipart.ts), not
 * undici's: bodies RFC 7578 allows and undici refuses (an unquoted name, a preamble) lost opt-outs.
 */
async function parseMultipart(req: Request, add: AddField): Promise<FormFields> {
  const body = await readBodyUpTo(req, MAX_MULTIPART_BYTES);
  const fields: FormFields = new Map();
  for (const { name, value } of parseMultipartFields(body, req.headers['content-type'] ?? '')) add(fields, name, value);
  return fields;
}

const TOO_LARGE = Symbol('too large');

/** The raw body, 413 as soon as it is (or says it will be) larger than `limit`. */
async function readBodyUpTo(req: Request, limit: number): Promise<Buffer> {
  const tooLarge = () => new AppError('payload_too_large', 413, 'The request body is too large');
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  return readBounded(req, limit).catch((error: unknown) => {
    throw error === TOO_LARGE ? tooLarge() : error;
  });
}

/**
 * The body, or a rejection as soon as it passes `limit`. The rest is then drained and
 * discarded (not destroyed), so the answer still reaches the client.
 */
function readBounded(req: Request, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(TOO_LARGE);
        return;
      }
      chunks.push(chunk);
    });
    let ended = false;
    req.once('end', () => {
      ended = true;
      if (!over) resolve(Buffer.concat(chunks));
    });
    // The client went away mid-body (a reset): a 400 to nobody, not a failure of ours.
    req.once('error', () => {
      if (!over) reject(new AppError('request_aborted', 400, 'The request was aborted'));
    });
    req.once('close', () => {
      if (!ended && !over) reject(new AppError('request_aborted', 400, 'The request was aborted'));
    });
  });
}
