import { AppError, ValidationError } from '../errors.js';

/*
 * A lenient multipart/form-data reader for the recipient's pages (RFC 8058 one-click, the
 * preference center). undici's FormData parser (Response.formData) refuses bodies that RFC
 * 7578 / 2046 / 2183 allow and real clients send — .NET's MultipartFormDataContent writes
 * `name=List-Unsubscribe` unquoted, others put a preamble before the first boundary or no space
 * after `form-data;` — and each refusal was a 400 and a lost opt-out (an attacker's finding).
 * Here a part is found by the boundary the Content-Type names (quoted or not), the preamble and
 * epilogue are ignored, the disposition type is read in any case and `name` quoted or not.
 * The body is already bounded (form-body.ts readBodyUpTo); the number of parts is bounded here.
 * Garbage — no boundary, no delimiter, no closing delimiter — is still a 400.
 */

/** As the app's urlencoded parser's `parameterLimit`: more fields than any of our forms has. */
export const MAX_MULTIPART_PARTS = 1000;

export interface MultipartField {
  name: string;
  value: string;
}

const unreadable = () => new ValidationError([{ field: '(body)', message: 'is not a readable multipart/form-data body' }]);

/**
 * The text fields of a multipart/form-data body, in order. Parts that carry a file
 * (`filename=`), or no disposition naming a field, are skipped: no recipient form uploads.
 */
export function parseMultipartFields(body: Buffer, contentType: string): MultipartField[] {
  const boundary = paramOf(contentType, 'boundary');
  // RFC 2046 5.1.1: 1 to 70 characters; a longer one is no client's.
  if (!boundary || boundary.length > 70) throw unreadable();
  // latin1 maps each byte to one code unit: offsets found in the text are offsets in the bytes.
  const text = body.toString('latin1');
  const dash = `--${boundary}`;
  let at = firstDelimiter(text, dash);
  if (at < 0) throw unreadable();
  const fields: MultipartField[] = [];
  let parts = 0;
  for (;;) {
    let cursor = at + dash.length;
    if (text.startsWith('--', cursor)) return fields; // the close delimiter: the epilogue is ignored
    // Transport padding (white space) may follow a delimiter before its line break.
    while (text[cursor] === ' ' || text[cursor] === '\t') cursor += 1;
    if (text.startsWith('\r\n', cursor)) cursor += 2;
    else if (text[cursor] === '\n') cursor += 1;
    else throw unreadable();
    const next = nextDelimiter(text, dash, cursor);
    if (next.at < 0) throw unreadable(); // cut short: no close delimiter
    parts += 1;
    if (parts > MAX_MULTIPART_PARTS) throw new AppError('payload_too_large', 413, 'The form has too many fields');
    const field = readPart(body, text, cursor, next.contentEnd);
    if (field) fields.push(field);
    at = next.at;
  }
}

/** The first delimiter: at the very start, or at the start of a line after the preamble. */
function firstDelimiter(text: string, dash: string): number {
  if (text.startsWith(dash) && endsDelimiter(text, dash.length)) return 0;
  return nextDelimiter(text, dash, 0).at;
}

/** After `--boundary`: the close's `--`, transport padding or a line break; anything else is content that merely starts alike. */
const endsDelimiter = (text: string, at: number) => at >= text.length || '- \t\r\n'.includes(text[at]!);

/** The next delimiter line (`CRLF--boundary`, or LF alone from lax clients) from `from`: where it starts and where the part's content ends. */
function nextDelimiter(text: string, dash: string, from: number): { at: number; contentEnd: number } {
  let search = from;
  for (;;) {
    const found = text.indexOf(`\n${dash}`, search);
    if (found < 0) return { at: -1, contentEnd: -1 };
    if (endsDelimiter(text, found + 1 + dash.length)) {
      const contentEnd = found > from && text[found - 1] === '\r' ? found - 1 : found;
      return { at: found + 1, contentEnd };
    }
    search = found + 1;
  }
}

/** One part between `start` and `end`: its headers, then (after an empty line) its value. */
function readPart(body: Buffer, text: string, start: number, end: number): MultipartField | undefined {
  let headerEnd: number;
  let valueStart: number;
  if (text.startsWith('\r\n', start) || text[start] === '\n') return undefined; // no headers: no name
  // Searched within the part only: to the body's end, each of 1,000 parts searched up to 64 KB
  // (a crafted body took 0.3 s of the answering thread, before its token was checked).
  const part = text.slice(start, end);
  const crlfAt = part.indexOf('\r\n\r\n');
  const lfAt = part.indexOf('\n\n');
  const crlf = crlfAt < 0 ? -1 : start + crlfAt;
  const lf = lfAt < 0 ? -1 : start + lfAt;
  if (crlf >= 0 && crlf < end && (lf < 0 || crlf <= lf)) {
    headerEnd = crlf;
    valueStart = crlf + 4;
  } else if (lf >= 0 && lf < end) {
    headerEnd = lf;
    valueStart = lf + 2;
  } else {
    throw unreadable(); // headers never ended
  }
  const headers = headersOf(text.slice(start, headerEnd));
  const disposition = headers.get('content-disposition');
  if (!disposition) return undefined;
  const type = disposition.split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'form-data') return undefined;
  const name = paramOf(disposition, 'name');
  if (name === undefined || paramOf(disposition, 'filename') !== undefined) return undefined;
  const charset = paramOf(headers.get('content-type') ?? '', 'charset');
  // The header was read byte for byte (latin1); clients write a name's non-ASCII characters in UTF-8.
  return { name: decode(Buffer.from(name, 'latin1'), undefined), value: decode(body.subarray(valueStart, end), charset) };
}

/** Header lines by lowercased name (the last of a repeated one wins); folded lines are joined. */
function headersOf(block: string): Map<string, string> {
  const headers = new Map<string, string>();
  const lines = block.split(/\r?\n/);
  let current: string | undefined;
  for (const line of lines) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && current !== undefined) {
      headers.set(current, `${headers.get(current)} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = line.slice(0, colon).trim().toLowerCase();
    headers.set(current, line.slice(colon + 1).trim());
  }
  return headers;
}

/**
 * A parameter of a header value (`type; a=b; c="d e"`), its name in any case, the value a
 * token or a quoted string (backslash escapes undone); undefined when absent. Read by one
 * left-to-right scan, so a quoted `;` or `=` is part of its value.
 */
export function paramOf(header: string, wanted: string): string | undefined {
  let i = header.indexOf(';');
  if (i < 0) return undefined;
  while (i < header.length) {
    i += 1; // past ';'
    while (header[i] === ' ' || header[i] === '\t') i += 1;
    let nameEnd = i;
    while (nameEnd < header.length && header[nameEnd] !== '=' && header[nameEnd] !== ';') nameEnd += 1;
    const name = header.slice(i, nameEnd).trim().toLowerCase();
    i = nameEnd;
    let value: string | undefined;
    if (header[i] === '=') {
      i += 1;
      while (header[i] === ' ' || header[i] === '\t') i += 1;
      if (header[i] === '"') {
        let out = '';
        i += 1;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < header.length) i += 1;
          out += header[i];
          i += 1;
        }
        i += 1; // past the closing quote
        value = out;
        while (i < header.length && header[i] !== ';') i += 1;
      } else {
        const valueEnd = header.indexOf(';', i);
        value = header.slice(i, valueEnd < 0 ? header.length : valueEnd).trim();
        i = valueEnd < 0 ? header.length : valueEnd;
      }
    }
    if (name === wanted) return value;
  }
  return undefined;
}

/** Bytes as text in the part's charset when TextDecoder knows it, UTF-8 otherwise (RFC 7578's default). */
function decode(bytes: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder(charset ?? 'utf-8').decode(bytes);
  } catch {
    return new TextDecoder('utf-8').decode(bytes);
  }
}
