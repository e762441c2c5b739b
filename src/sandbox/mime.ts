import { simpleParser, type AddressObject, type EmailAddress } from 'mailparser';

/**
 * RFC 822 / MIME helpers for the sandbox. mailparser gives us the decoded summary
 * (addresses, ids, text, html); the Gmail `payload` tree needs the part structure
 * itself, which mailparser flattens away, so a small structural parser lives here too.
 */

export interface MessageHeader {
  name: string;
  value: string;
}

export interface MessagePartBody {
  size: number;
  data?: string;
  attachmentId?: string;
}

/** The shape of Gmail's `Schema$MessagePart`. */
export interface MessagePart {
  partId: string;
  mimeType: string;
  filename: string;
  headers: MessageHeader[];
  body: MessagePartBody;
  parts?: MessagePart[];
}

export interface ParsedAddress {
  address: string;
  name: string;
}

/** What the sandbox needs to know about a message to store, thread, route and search it. */
export interface MailSummary {
  messageId?: string;
  inReplyTo?: string;
  references: string[];
  from: ParsedAddress[];
  replyTo: ParsedAddress[];
  to: ParsedAddress[];
  cc: ParsedAddress[];
  bcc: ParsedAddress[];
  subject: string;
  date?: Date;
  text: string;
  html?: string;
  hasAttachments: boolean;
}

export function toBase64Url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Gmail sends and accepts base64url, but people and older clients also send padded standard base64. */
export function fromBase64Any(value: string): Buffer {
  return Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/').replace(/\s+/g, ''), 'base64');
}

/** `<id@host>` → `id@host`, so ids compare equal however a client bracketed them. */
export function normalizeMessageId(value: string): string {
  return value.trim().replace(/^<+/, '').replace(/>+$/, '').trim().toLowerCase();
}

function flattenAddresses(input: AddressObject | AddressObject[] | undefined): ParsedAddress[] {
  if (!input) return [];
  const objects = Array.isArray(input) ? input : [input];
  const out: ParsedAddress[] = [];
  const visit = (entry: EmailAddress) => {
    if (entry.group) entry.group.forEach(visit);
    else if (entry.address) out.push({ address: entry.address.toLowerCase(), name: entry.name ?? '' });
  };
  for (const object of objects) object.value.forEach(visit);
  return out;
}

function referencesOf(value: string[] | string | undefined): string[] {
  if (!value) return [];
  const list = Array.isArray(value) ? value : value.split(/\s+/);
  return list.map((id) => id.trim()).filter(Boolean);
}

export async function summarize(raw: Buffer): Promise<MailSummary> {
  const parsed = await simpleParser(raw, { skipImageLinks: true, skipTextLinks: true });
  return {
    messageId: parsed.messageId,
    inReplyTo: parsed.inReplyTo,
    references: referencesOf(parsed.references),
    from: flattenAddresses(parsed.from),
    replyTo: flattenAddresses(parsed.replyTo),
    to: flattenAddresses(parsed.to),
    cc: flattenAddresses(parsed.cc),
    bcc: flattenAddresses(parsed.bcc),
    subject: parsed.subject ?? '',
    date: parsed.date,
    text: parsed.text ?? '',
    html: parsed.html === false ? undefined : parsed.html,
    hasAttachments: parsed.attachments.some((a) => a.contentDisposition === 'attachment' || Boolean(a.filename)),
  };
}

/** Splits at the first empty line; bytes are kept as they are (latin1 is a 1:1 byte view). */
export function splitHeaderAndBody(raw: Buffer): { headerText: string; body: Buffer } {
  const text = raw.toString('latin1');
  const match = /\r?\n\r?\n/.exec(text);
  if (text.startsWith('\r\n') || text.startsWith('\n')) {
    return { headerText: '', body: raw.subarray(text.startsWith('\r\n') ? 2 : 1) };
  }
  if (!match) return { headerText: text, body: Buffer.alloc(0) };
  return {
    headerText: text.slice(0, match.index),
    body: raw.subarray(match.index + match[0].length),
  };
}

interface RawHeaderLine {
  name: string;
  /** The value exactly as written, folding included, as latin1. */
  rawValue: string;
}

function headerLines(headerText: string): RawHeaderLine[] {
  const lines: RawHeaderLine[] = [];
  for (const line of headerText.split(/\r?\n/)) {
    const last = lines[lines.length - 1];
    if (/^[ \t]/.test(line) && last) {
      last.rawValue += `\r\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    lines.push({ name: line.slice(0, colon).trim(), rawValue: line.slice(colon + 1) });
  }
  return lines;
}

function decodeCharset(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset.trim().toLowerCase() || 'utf-8').decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

/** RFC 2047 encoded words (`=?utf-8?B?…?=`), the way Gmail shows header values already decoded. */
export function decodeEncodedWords(value: string): string {
  const joined = value.replace(/(=\?[^?]+\?[bBqQ]\?[^?]*\?=)\s+(?==\?[^?]+\?[bBqQ]\?[^?]*\?=)/g, '$1');
  return joined.replace(/=\?([^?*]+)(?:\*[^?]*)?\?([bBqQ])\?([^?]*)\?=/g, (_all, charset: string, encoding: string, text: string) => {
    const bytes =
      encoding.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64')
        : decodeQuotedPrintable(text.replace(/_/g, ' '));
    return decodeCharset(bytes, charset);
  });
}

function headerValue(rawValue: string): string {
  const unfolded = rawValue.replace(/\r?\n(?=[ \t])/g, '').trim();
  // Header bytes are UTF-8 when not encoded words (RFC 6532); latin1 was only our byte view.
  return decodeEncodedWords(Buffer.from(unfolded, 'latin1').toString('utf8'));
}

export function parseHeaders(headerText: string): MessageHeader[] {
  return headerLines(headerText).map((line) => ({ name: line.name, value: headerValue(line.rawValue) }));
}

export function decodeQuotedPrintable(input: string): Buffer {
  const text = input.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    const hex = text.slice(i + 1, i + 3);
    if (char === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(char.charCodeAt(0) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

export interface ContentType {
  mimeType: string;
  params: Record<string, string>;
}

function parseParams(segments: string[]): Record<string, string> {
  const params: Record<string, string> = {};
  for (const segment of segments) {
    const eq = segment.indexOf('=');
    if (eq <= 0) continue;
    const key = segment.slice(0, eq).trim().toLowerCase();
    let value = segment.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    // RFC 2231 `filename*=utf-8''…`: decoded so the Gmail `filename` reads like Gmail's.
    if (key.endsWith('*')) {
      const match = /^([^']*)'[^']*'(.*)$/.exec(value);
      params[key.slice(0, -1)] = match ? decodeCharset(Buffer.from(decodeURIComponent(match[2]!), 'latin1'), match[1] || 'utf-8') : value;
    } else {
      params[key] = decodeEncodedWords(value);
    }
  }
  return params;
}

/** Splits `a; b="x;y"; c` on semicolons outside quotes. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (const char of value) {
    if (char === '"') quoted = !quoted;
    if (char === ';' && !quoted) {
      out.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  out.push(current);
  return out;
}

export function contentTypeOf(headers: MessageHeader[], fallback: string): ContentType {
  const header = headers.find((h) => h.name.toLowerCase() === 'content-type');
  if (!header) return { mimeType: fallback, params: {} };
  const [type = '', ...rest] = splitParams(header.value);
  const mimeType = type.trim().toLowerCase();
  return { mimeType: mimeType.includes('/') ? mimeType : fallback, params: parseParams(rest) };
}

/** The parts of a multipart body, each still with its own headers. */
export function splitMultipart(body: Buffer, boundary: string): Buffer[] {
  const text = body.toString('latin1');
  const escaped = boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${escaped}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
  const parts: Buffer[] = [];
  let start = -1;
  for (let match = delimiter.exec(text); match; match = delimiter.exec(text)) {
    if (start >= 0) parts.push(Buffer.from(text.slice(start, match.index), 'latin1'));
    if (match[1]) {
      start = -1;
      break;
    }
    let after = match.index + match[0].length;
    if (text.startsWith('\r\n', after)) after += 2;
    else if (text[after] === '\n') after += 1;
    start = after;
  }
  if (start >= 0) parts.push(Buffer.from(text.slice(start), 'latin1'));
  return parts;
}

function decodeTransfer(body: Buffer, headers: MessageHeader[]): Buffer {
  const encoding = headers.find((h) => h.name.toLowerCase() === 'content-transfer-encoding')?.value.trim().toLowerCase();
  if (encoding === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body.toString('latin1'));
  return body;
}

export interface PayloadOptions {
  /** Gives each attachment an id under which its bytes can be fetched later. */
  registerAttachment: (data: Buffer) => string;
}

function buildPart(raw: Buffer, partId: string, fallbackType: string, options: PayloadOptions): MessagePart {
  const { headerText, body } = splitHeaderAndBody(raw);
  const headers = parseHeaders(headerText);
  const { mimeType, params } = contentTypeOf(headers, fallbackType);
  const disposition = headers.find((h) => h.name.toLowerCase() === 'content-disposition');
  const dispositionParams = disposition ? parseParams(splitParams(disposition.value).slice(1)) : {};
  const filename = dispositionParams['filename'] ?? params['name'] ?? '';

  if (mimeType.startsWith('multipart/') && params['boundary']) {
    // Inside multipart/digest the default part type is message/rfc822 (RFC 2046 5.1.5).
    const childFallback = mimeType === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
    const children = splitMultipart(body, params['boundary']).map((child, index) =>
      buildPart(child, partId === '' ? String(index) : `${partId}.${index}`, childFallback, options),
    );
    return { partId, mimeType, filename, headers, body: { size: 0 }, parts: children };
  }

  const data = decodeTransfer(body, headers);
  if (filename) {
    return { partId, mimeType, filename, headers, body: { attachmentId: options.registerAttachment(data), size: data.length } };
  }
  return { partId, mimeType, filename, headers, body: { size: data.length, ...(data.length > 0 ? { data: toBase64Url(data) } : {}) } };
}

/** The Gmail `payload` for `format=full`: the MIME tree with decoded bodies as base64url. */
export function buildPayload(raw: Buffer, options: PayloadOptions): MessagePart {
  return buildPart(raw, '', 'text/plain', options);
}

/** Gmail's snippet: the start of the text, whitespace collapsed, HTML-escaped as Gmail does. */
export function snippetOf(text: string): string {
  const collapsed = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  return collapsed.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Header names present in the raw header block, lower-cased. */
export function headerNames(raw: Buffer): Set<string> {
  return new Set(headerLines(splitHeaderAndBody(raw).headerText).map((h) => h.name.toLowerCase()));
}

/** Prepends header lines (each `Name: value`) before the existing headers, keeping the body byte-exact. */
export function prependHeaders(raw: Buffer, lines: string[]): Buffer {
  if (lines.length === 0) return raw;
  const eol = raw.includes('\r\n') ? '\r\n' : '\n';
  return Buffer.concat([Buffer.from(lines.map((l) => l + eol).join(''), 'utf8'), raw]);
}

/** Removes every occurrence of a header (with its folded continuation lines), as an MTA drops Bcc. */
export function removeHeader(raw: Buffer, name: string): Buffer {
  const { headerText, body } = splitHeaderAndBody(raw);
  if (!headerText) return raw;
  const eol = headerText.includes('\r\n') || raw.includes('\r\n') ? '\r\n' : '\n';
  const kept: string[] = [];
  let dropping = false;
  for (const line of headerText.split(/\r?\n/)) {
    if (/^[ \t]/.test(line)) {
      if (!dropping) kept.push(line);
      continue;
    }
    dropping = line.slice(0, line.indexOf(':')).trim().toLowerCase() === name.toLowerCase();
    if (!dropping) kept.push(line);
  }
  return Buffer.concat([Buffer.from(kept.join(eol) + eol + eol, 'latin1'), body]);
}

export function formatAddress(address: ParsedAddress): string {
  return address.name ? `${address.name} <${address.address}>` : address.address;
}
