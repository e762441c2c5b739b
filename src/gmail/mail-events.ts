import { simpleParser } from 'mailparser';
import addressparser from 'nodemailer/lib/addressparser';

/*
 * What a synced message means for mail we sent: a reply, a bounce (DSN), or neither.
 * Pure rules over headers (and, for DSNs only, the parsed report); no I/O, so they are
 * unit-tested with fixtures (mail-events.test.ts). The sync service does the lookups.
 */

/** Headers asked for with `format=metadata`: addresses, threading, and what marks a DSN or an auto-reply. */
export const SYNC_METADATA_HEADERS = [
  'From',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'In-Reply-To',
  'References',
  'Content-Type',
  'X-Failed-Recipients',
  'Auto-Submitted',
  'X-Autoreply',
  'X-Autorespond',
  'Precedence',
] as const;

/** Header names lowercased, as gmail-client's getMetadata returns them. */
export type MessageHeaders = Record<string, string>;

export type BounceKind = 'hard' | 'soft';

export interface DsnRecipient {
  recipient: string;
  /** Enhanced status code (RFC 3463), e.g. 5.1.1; absent when the report gives none. */
  status?: string;
  action?: string;
  kind: BounceKind;
}

export interface DsnReport {
  recipients: DsnRecipient[];
  /** Message-ID (no angle brackets) of the message that bounced, from the quoted original. */
  originalMessageId?: string;
}

export type MailClassification =
  | { type: 'bounce'; originalMessageIds: string[]; recipients: DsnRecipient[] }
  | { type: 'reply'; originalMessageIds: string[]; automatic: boolean }
  | { type: 'other' };

/** Bare addresses of an address header (To: "Bob" <bob@x>, carol@y), lowercased, groups flattened. */
export function parseAddressList(value: string | undefined): string[] {
  if (!value) return [];
  const flat = addressparser(value, { flatten: true })
    .map((entry) => entry.address?.trim().toLowerCase() ?? '')
    .filter((address) => address.includes('@'));
  return [...new Set(flat)];
}

/** Message-IDs in a Message-ID / In-Reply-To / References header, without angle brackets, in header order. */
export function parseMessageIds(value: string | undefined): string[] {
  if (!value) return [];
  const bracketed = [...value.matchAll(/<([^<>\s]+)>/g)].map((m) => m[1]!);
  if (bracketed.length > 0) return [...new Set(bracketed)];
  // Some clients write a bare id; take the whole value when it looks like one.
  const bare = value.trim();
  return /^[^\s<>]+@[^\s<>]+$/.test(bare) ? [bare] : [];
}

const DAEMON_SENDER = /^(mailer-daemon|postmaster|mail-daemon)@/i;

/**
 * A delivery status notification: from a mailer daemon, or a multipart/report of type
 * delivery-status. Only these are fetched in full (their report is machine text).
 */
export function looksLikeDsn(headers: MessageHeaders): boolean {
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  if (/^\s*multipart\/report\b/.test(contentType) && /report-type\s*=\s*"?(global-)?delivery-status/.test(contentType)) return true;
  return parseAddressList(headers['from']).some((a) => DAEMON_SENDER.test(a));
}

/** Hard if the enhanced status is 5.x.x, soft if 4.x.x (or unknown: a guess must not suppress anyone). */
export function bounceKindOf(status: string | undefined): BounceKind {
  return status?.startsWith('5.') ? 'hard' : 'soft';
}

/** Unfolded `Name: value` fields of one RFC 822-style block, names lowercased (the first of each wins). */
function parseFields(block: string): Map<string, string> {
  const fields = new Map<string, string>();
  const unfolded = block.replace(/\r?\n[ \t]+/g, ' ');
  for (const line of unfolded.split(/\r?\n/)) {
    const match = /^([A-Za-z0-9-]+)\s*:\s*(.*)$/.exec(line);
    if (match && !fields.has(match[1]!.toLowerCase())) fields.set(match[1]!.toLowerCase(), match[2]!.trim());
  }
  return fields;
}

/** The recipients a `message/delivery-status` body reports as failed or delayed (RFC 3464). */
export function parseDeliveryStatus(text: string): DsnRecipient[] {
  const blocks = text.split(/\r?\n[ \t]*\r?\n/).map(parseFields);
  const recipients: DsnRecipient[] = [];
  for (const fields of blocks) {
    const rawRecipient = fields.get('final-recipient') ?? fields.get('original-recipient');
    if (!rawRecipient) continue;
    // `rfc822; bob@example.com` (the address type is optional in practice).
    const recipient = rawRecipient.replace(/^[^;]*;\s*/, '').replace(/^<|>$/g, '').trim().toLowerCase();
    if (!recipient.includes('@')) continue;
    const action = fields.get('action')?.toLowerCase();
    const status = /^([245])\.\d{1,3}\.\d{1,3}/.exec(fields.get('status') ?? '')?.[0];
    // delivered / relayed / expanded are success notifications, not bounces.
    if (action && action !== 'failed' && action !== 'delayed') continue;
    if (!action && status?.startsWith('2')) continue;
    recipients.push({ recipient, ...(status ? { status } : {}), ...(action ? { action } : {}), kind: bounceKindOf(status) });
  }
  return recipients;
}

function headerBlock(text: string): string {
  const end = text.search(/\r?\n\r?\n/);
  return end === -1 ? text : text.slice(0, end);
}

/**
 * Reads a DSN's machine-readable parts with mailparser: the delivery-status part (kept as
 * a part, not merged into the text) and the quoted original (text/rfc822-headers or
 * message/rfc822), of which only the headers are looked at. Nothing here is stored.
 */
export async function readDsn(raw: Buffer): Promise<DsnReport> {
  const parsed = await simpleParser(raw, { keepDeliveryStatus: true, skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
  const recipients: DsnRecipient[] = [];
  let originalMessageId: string | undefined;
  for (const part of parsed.attachments) {
    const type = part.contentType.toLowerCase();
    if (type === 'message/delivery-status' || type === 'message/global-delivery-status') {
      recipients.push(...parseDeliveryStatus(part.content.toString('utf8')));
    } else if (!originalMessageId && (type === 'text/rfc822-headers' || type === 'message/rfc822' || type === 'message/global-headers' || type === 'message/global')) {
      originalMessageId = parseMessageIds(parseFields(headerBlock(part.content.toString('utf8'))).get('message-id'))[0];
    }
  }
  const byRecipient = new Map<string, DsnRecipient>();
  for (const r of recipients) if (!byRecipient.has(r.recipient)) byRecipient.set(r.recipient, r);
  return { recipients: [...byRecipient.values()], ...(originalMessageId ? { originalMessageId } : {}) };
}

/** An out-of-office or other machine answer (RFC 3834 Auto-Submitted, and the common non-standard markers). */
export function isAutomaticReply(headers: MessageHeaders): boolean {
  const autoSubmitted = headers['auto-submitted']?.trim().toLowerCase();
  if (autoSubmitted && autoSubmitted !== 'no') return true;
  if (headers['x-autoreply'] !== undefined || headers['x-autorespond'] !== undefined) return true;
  return /^(auto_reply|bulk|junk)$/i.test(headers['precedence']?.trim() ?? '');
}

/**
 * What an inbound message means for mail we sent. `originalMessageIds` are the candidates
 * for "the message of ours it is about", best first; the caller keeps the first it knows.
 * A DSN is a bounce only when it reports a failed or delayed recipient; otherwise it is
 * neither (a delivery receipt). Outbound mail is never a reply or a bounce.
 */
export function classifyMessage(input: { direction: 'inbound' | 'outbound'; headers: MessageHeaders; dsn?: DsnReport }): MailClassification {
  const { headers } = input;
  if (input.direction !== 'inbound') return { type: 'other' };
  const threading = [...parseMessageIds(headers['in-reply-to']), ...parseMessageIds(headers['references']).reverse()];

  if (input.dsn || looksLikeDsn(headers)) {
    let recipients = input.dsn?.recipients ?? [];
    if (recipients.length === 0) {
      // A report without a delivery-status part: the recipients are named, the status is not.
      recipients = parseAddressList(headers['x-failed-recipients']).map((recipient) => ({ recipient, kind: 'soft' as const }));
    }
    if (recipients.length === 0) return { type: 'other' };
    const originalMessageIds = unique([...(input.dsn?.originalMessageId ? [input.dsn.originalMessageId] : []), ...threading]);
    return originalMessageIds.length > 0 ? { type: 'bounce', originalMessageIds, recipients } : { type: 'other' };
  }

  if (threading.length === 0) return { type: 'other' };
  return { type: 'reply', originalMessageIds: unique(threading), automatic: isAutomaticReply(headers) };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
