import addressparser from 'nodemailer/lib/addressparser';
import { isAutomaticReply } from './bounces/auto-reply.js';
import type { BounceNotice } from './bounces/types.js';

/*
 * What a synced message means for mail we sent: a reply (from a person or automatic), a
 * bounce notice, or neither. Pure rules over headers (and, for notices only, what the
 * bounce reader in ./bounces found); no I/O, so they are unit-tested with fixtures
 * (mail-events.test.ts, bounces/*.test.ts). The sync service does the lookups.
 */

/** Headers asked for with `format=metadata`: addresses, threading, and what marks a DSN or an auto-reply. */
export const SYNC_METADATA_HEADERS = [
  'From',
  'To',
  'Cc',
  // Kept only on sent mail: Gmail keeps it on the sender's copy, so a bounce of a Bcc recipient of
  // mail sent from another client matches; on received mail it is anyone's word.
  'Bcc',
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
  'X-Autoresponder',
  'Precedence',
] as const;

/** Header names lowercased, as gmail-client's getMetadata returns them. */
export type MessageHeaders = Record<string, string>;

export type MailClassification =
  /**
   * `quotedMessageId`: the Message-ID of the bounced message the notice quotes (attached or
   * inline), which alone says which message bounced. `threadingIds`: the notice's own
   * In-Reply-To/References, looked at only when it quotes none. Neither: the sync matches each
   * recipient to our latest send to it (signals.ts).
   */
  | { type: 'bounce'; quotedMessageId?: string; threadingIds: string[]; notice: BounceNotice }
  | { type: 'reply'; originalMessageIds: string[]; automatic: boolean }
  | { type: 'other' };

export { isAutomaticReply };

/** Bare addresses of an address header (To: "Bob" <bob@x>, carol@y), lowercased, groups flattened. */
/**
 * At most this many addresses of one header are kept. No real mail names more; a header naming
 * tens of thousands (anyone can send one) would otherwise be stored and matched address by address.
 */
export const MAX_HEADER_ADDRESSES = 1000;

export function parseAddressList(value: string | undefined): string[] {
  if (!value) return [];
  const flat = addressparser(value, { flatten: true })
    .map((entry) => entry.address?.trim().toLowerCase() ?? '')
    .filter((address) => address.includes('@'));
  return [...new Set(flat)].slice(0, MAX_HEADER_ADDRESSES);
}

const MAX_MESSAGE_ID_LENGTH = 998;

/** Message-IDs in a Message-ID / In-Reply-To / References header, without angle brackets, in header order. */
export function parseMessageIds(value: string | undefined): string[] {
  if (!value) return [];
  // Longer than a header line may be (RFC 5322: 998) is no real id, and would not fit the id's index.
  const bracketed = [...value.matchAll(/<([^<>\s]+)>/g)].map((m) => m[1]!).filter((id) => id.length <= MAX_MESSAGE_ID_LENGTH);
  if (bracketed.length > 0) return [...new Set(bracketed)];
  // Some clients write a bare id; take the whole value when it looks like one.
  const bare = value.trim();
  return bare.length <= MAX_MESSAGE_ID_LENGTH && /^[^\s<>]+@[^\s<>]+$/.test(bare) ? [bare] : [];
}

const DAEMON_SENDER = /^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@/i;
/** A mail system's own address (mailer-daemon@, postmaster@…), the usual author of a delivery notice. */
export const isDaemonSender = (address: string | undefined) => Boolean(address && DAEMON_SENDER.test(address));
/** Subjects only delivery notices use (a person's mail with such a subject is still read as metadata only if it is not one). */
const NOTICE_SUBJECT =
  /^\s*(delivery status notification|undeliver(able|ed mail)|mail delivery failed|failure notice|returned mail:|delivery status notification:|non[- ]?deliver(y|able)|delivery failure|delivery (has )?failed|message not delivered|warning: could not send message|postmaster notify)/i;

/**
 * A delivery status notification: a mailer daemon's report, a multipart/report of type
 * delivery-status, an `X-Failed-Recipients` header, or a notice's subject. Only these are
 * fetched in full (their report is machine text about our own message).
 */
export function looksLikeDsn(headers: MessageHeaders): boolean {
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  if (/^\s*multipart\/report\b/.test(contentType) && /report-type\s*=\s*"?(global-)?delivery-status/.test(contentType)) return true;
  if (headers['x-failed-recipients']?.includes('@')) return true;
  if (NOTICE_SUBJECT.test(headers['subject'] ?? '')) return true;
  return parseAddressList(headers['from']).some((a) => DAEMON_SENDER.test(a));
}

/**
 * What an inbound message means for mail we sent. A reply's `originalMessageIds` are the
 * candidates for "the message of ours it is about", best first. A notice is a bounce when the reader
 * found a failed or delayed recipient in it; a notice it could not read is neither (the
 * sync counts it as unparsed). Outbound mail is never a reply or a bounce.
 */
export function classifyMessage(input: { direction: 'inbound' | 'outbound'; headers: MessageHeaders; notice?: BounceNotice }): MailClassification {
  const { headers } = input;
  if (input.direction !== 'inbound') return { type: 'other' };
  const threading = [...parseMessageIds(headers['in-reply-to']), ...parseMessageIds(headers['references']).reverse()];

  if (input.notice) {
    const quoted = input.notice.originalMessageId;
    return { type: 'bounce', ...(quoted ? { quotedMessageId: quoted } : {}), threadingIds: unique(threading), notice: input.notice };
  }
  if (looksLikeDsn(headers)) return { type: 'other' };

  if (threading.length === 0) return { type: 'other' };
  return { type: 'reply', originalMessageIds: unique(threading), automatic: isAutomaticReply(headers) };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
