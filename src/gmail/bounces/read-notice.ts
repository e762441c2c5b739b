import { simpleParser, type Attachment } from 'mailparser';
import { parseAddressList, parseMessageIds } from '../mail-events.js';
import { addressOfField, parseDeliveryStatus, parseFields } from './delivery-status.js';
import { PROSE_FAMILIES, splitReport } from './prose-families.js';
import { finishRecipient } from './status.js';
import type { BounceNotice, NoticeFormat, RawRecipient } from './types.js';

/*
 * The bounce reader: one raw notice in, the failed recipients and the bounced message's
 * Message-ID out — or undefined when it names no failed recipient (a delivery receipt, or
 * a shape we cannot read; the sync counts those as `unparsedNotice`).
 *
 * Order of trust: the machine-readable report (RFC 3464 message/delivery-status) first;
 * then the prose of the MTA families that send none (Gmail's plain-text notices, Exim,
 * qmail, Exchange…); then only the X-Failed-Recipients header. Parsed in memory, never stored.
 */

const DELIVERY_STATUS_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status']);
const ORIGINAL_TYPES = new Set(['message/rfc822', 'text/rfc822-headers', 'message/global', 'message/global-headers', 'message/partial']);

function headerBlock(text: string): string {
  const end = text.search(/\r?\n\r?\n/);
  return end === -1 ? text : text.slice(0, end);
}

/** Message-ID (without brackets) of a header block, or of the first `Message-ID:` line in quoted text. */
export function messageIdIn(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const fromBlock = parseFields(headerBlock(text)).get('message-id');
  const value = fromBlock ?? /^[ \t>]*Message-I[Dd][ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)/m.exec(text)?.[1];
  if (!value) return undefined;
  return parseMessageIds(value)[0];
}

function originalMessageIdOf(attachments: Attachment[], quoted: string | undefined, text: string): string | undefined {
  for (const part of attachments) {
    if (!ORIGINAL_TYPES.has(part.contentType.toLowerCase())) continue;
    const id = messageIdIn(part.content.toString('utf8'));
    if (id) return id;
  }
  // Quoted inline (Gmail's plain-text notices, Exim, qmail…); a Message-ID header line anywhere in the body as a last resort.
  return messageIdIn(quoted) ?? (/^[ \t>]*Message-I[Dd][ \t]*:/m.test(text) ? messageIdIn(text.slice(text.search(/^[ \t>]*Message-I[Dd][ \t]*:/m))) : undefined);
}

function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && 'text' in value) return String((value as { text: unknown }).text);
  if (Array.isArray(value)) return value.map(headerText).filter(Boolean).join(', ');
  return undefined;
}

function rawBody(raw: Buffer): string {
  const text = raw.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  return end === -1 ? '' : text.slice(end).replace(/\r\n/g, '\n');
}

export async function readBounceNotice(raw: Buffer): Promise<BounceNotice | undefined> {
  const parsed = await simpleParser(raw, { keepDeliveryStatus: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
  // A notice whose MIME structure is broken (a boundary that never occurs) parses to nothing: read its body as text.
  const text = parsed.text?.trim() || parsed.attachments.length > 0 ? (parsed.text ?? '') : rawBody(raw);
  const { report, quoted } = splitReport(text);
  const subject = parsed.subject ?? '';

  let format: NoticeFormat | undefined;
  let found: RawRecipient[] = [];
  for (const part of parsed.attachments) {
    if (DELIVERY_STATUS_TYPES.has(part.contentType.toLowerCase())) found.push(...parseDeliveryStatus(part.content.toString('utf8')));
  }
  // A report part some MTAs label text/plain, or that ended up in the body.
  if (found.length === 0 && /^Final-Recipient\s*:/im.test(text)) found = parseDeliveryStatus(text);
  if (found.length > 0) format = 'rfc3464';

  if (!format) {
    for (const family of PROSE_FAMILIES) {
      if (!family.matches.test(report)) continue;
      found = family.read(report);
      if (found.length > 0) {
        format = family.format;
        break;
      }
    }
  }
  if (!format) {
    const failed = parseAddressList(headerText(parsed.headers.get('x-failed-recipients')));
    if (failed.length > 0) {
      const delayed = /\bdelay/i.test(subject) || /has been delayed|not yet been delivered|will (be )?retr/i.test(report);
      found = failed.map((address) => ({ address, action: delayed ? 'delayed' : 'failed', diagnostic: report }));
      format = 'x-failed-recipients';
    }
  }
  if (!format) return undefined;

  // The notice is addressed to the sender: its own address in the list is never a failed recipient.
  const sender = new Set(parseAddressList(parsed.to ? headerText(parsed.to) : undefined));
  const byAddress = new Map<string, RawRecipient>();
  for (const r of found) {
    const address = addressOfField(r.address);
    if (!address || sender.has(address) || byAddress.has(address)) continue;
    byAddress.set(address, { ...r, address });
  }
  if (byAddress.size === 0) return undefined;
  // The notice's prose explains a lone recipient; with several it could belong to any of them.
  const noticeText = byAddress.size === 1 ? report : undefined;
  const originalMessageId = originalMessageIdOf(parsed.attachments, quoted, text);
  return {
    format,
    recipients: [...byAddress.values()].map((r) => finishRecipient(r, noticeText)),
    ...(originalMessageId ? { originalMessageId } : {}),
  };
}
