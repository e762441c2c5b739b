import { randomBytes } from 'node:crypto';
import { splitHeaderAndBody } from './mime.js';

/** `hard`: address not found (5.1.1). `soft`: failed for a passing reason (mailbox full, 5.2.2). `delay`: still retrying (4.2.2). */
export type BounceKind = 'hard' | 'soft' | 'delay';

/**
 * `report`: today's Gmail notice, RFC 3464 multipart/report with a human part, the
 * message/delivery-status part and the original. `text`: Gmail's plain-text notice (still
 * received from Google Workspace relays and older accounts): the recipient in
 * X-Failed-Recipients and in the prose, the original quoted inline after "----- Original
 * message -----", no report part and no threading headers.
 */
export type NoticeForm = 'report' | 'text';

export interface DsnInput {
  /** The mailbox that sent the original and now receives the report. */
  to: string;
  /** The address that could not be reached. */
  recipient: string;
  kind: BounceKind;
  form?: NoticeForm;
  /** The original message as sent (quoted, whole or its headers). */
  original: Buffer;
  originalMessageId?: string;
  /** Enhanced status code; default 5.1.1 (hard), 5.2.2 (soft) or 4.2.2 (delay). */
  status?: string;
  diagnostic?: string;
  /** `headers` (default): the original's headers; `full`: the whole original; `none`: nothing of it, and no threading headers. */
  includeOriginal?: 'headers' | 'full' | 'none';
  date: Date;
}

const MAILER_DAEMON = 'Mail Delivery Subsystem <mailer-daemon@googlemail.com>';
const DEFAULT_STATUS: Record<BounceKind, string> = { hard: '5.1.1', soft: '5.2.2', delay: '4.2.2' };

function rfc2822Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}

function diagnosticOf(input: DsnInput, status: string): string {
  if (input.diagnostic) return input.diagnostic;
  if (input.kind === 'hard')
    return `550-${status} The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.`;
  if (input.kind === 'soft') return `552-${status} The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm`;
  return `452-${status} The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp`;
}

function envelope(input: DsnInput, extra: string[]): string[] {
  const date = rfc2822Date(input.date);
  return [
    'Return-Path: <>',
    `Received: from sandbox.mx.google.com by sandbox.mx.google.com with SMTP id ${randomBytes(6).toString('hex')}; ${date}`,
    `From: ${MAILER_DAEMON}`,
    `To: ${input.to}`,
    ...extra,
    `Subject: Delivery Status Notification (${input.kind === 'delay' ? 'Delay' : 'Failure'})`,
    `Message-ID: <sandbox-dsn-${randomBytes(10).toString('hex')}@mx.google.com>`,
    `Date: ${date}`,
    'MIME-Version: 1.0',
  ];
}

const crlf = (text: string) => text.replace(/\r?\n/g, '\r\n');

/** Gmail's plain-text notice: everything in one text/plain body, the original quoted after the marker. */
function buildTextNotice(input: DsnInput, status: string, diagnostic: string): Buffer {
  const delayed = input.kind === 'delay';
  const domain = input.recipient.split('@')[1] ?? 'unknown.invalid';
  const smtp = diagnostic.replace(/^(\d{3})-/, '$1 ');
  const lines = [
    // A failure names the address in X-Failed-Recipients; a delay does not (as Gmail).
    ...envelope(input, delayed ? [] : [`X-Failed-Recipients: ${input.recipient}`]),
    'Content-Type: text/plain; charset=UTF-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    ...(delayed
      ? [
          'This is an automatically generated Delivery Status Notification',
          '',
          'THIS IS A WARNING MESSAGE ONLY.',
          '',
          'YOU DO NOT NEED TO RESEND YOUR MESSAGE.',
          '',
          'Delivery to the following recipient has been delayed:',
          '',
          `     ${input.recipient}`,
          '',
          'Message will be retried for 2 more day(s)',
          '',
          'Technical details of temporary failure: ',
        ]
      : ['Delivery to the following recipient failed permanently:', '', `     ${input.recipient}`, '', 'Technical details of permanent failure: ']),
    `Google tried to deliver your message, but it was rejected by the server for the recipient domain ${domain} by mx.${domain}. [192.0.2.25].`,
    '',
    `The error that the other server returned was: ${smtp}`,
    '',
  ];
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  if (input.includeOriginal === 'none') return head;
  const original = input.includeOriginal === 'full' ? input.original : Buffer.from(crlf(splitHeaderAndBody(input.original).headerText) + '\r\n', 'latin1');
  return Buffer.concat([head, Buffer.from('----- Original message -----\r\n\r\n', 'latin1'), original, Buffer.from('\r\n', 'latin1')]);
}

/** Today's Gmail notice: multipart/report with a human part, message/delivery-status and the original. */
function buildReportNotice(input: DsnInput, status: string, diagnostic: string): Buffer {
  const boundary = `sandbox-dsn-${randomBytes(8).toString('hex')}`;
  const date = rfc2822Date(input.date);
  const domain = input.recipient.split('@')[1] ?? 'unknown.invalid';
  const failed = input.kind !== 'delay';
  const threading =
    input.originalMessageId && input.includeOriginal !== 'none' ? [`In-Reply-To: ${input.originalMessageId}`, `References: ${input.originalMessageId}`] : [];
  const human =
    input.kind === 'hard'
      ? ['** Address not found **', '', `Your message wasn't delivered to ${input.recipient} because the address couldn't be found, or is unable to receive mail.`]
      : input.kind === 'soft'
        ? ['** Message not delivered **', '', `Your message wasn't delivered to ${input.recipient} because the recipient's inbox is full.`]
        : [
            '** Message not delivered yet **',
            '',
            `There was a temporary problem delivering your message to ${input.recipient}. Gmail will retry for 47 more hours. You'll be notified if the delivery fails permanently.`,
          ];

  const lines = [
    ...envelope(input, ['Auto-Submitted: auto-replied', ...threading, ...(failed ? [`X-Failed-Recipients: ${input.recipient}`] : [])]),
    `Content-Type: multipart/report; boundary="${boundary}"; report-type=delivery-status`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset="UTF-8"',
    '',
    ...human,
    '',
    'The response from the remote server was:',
    diagnostic,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; googlemail.com',
    `Arrival-Date: ${date}`,
    '',
    `Final-Recipient: rfc822; ${input.recipient}`,
    `Action: ${failed ? 'failed' : 'delayed'}`,
    `Status: ${status}`,
    `Remote-MTA: dns; mx.${domain}`,
    `Diagnostic-Code: smtp; ${diagnostic}`,
    `Last-Attempt-Date: ${date}`,
    ...(failed ? [] : [`Will-Retry-Until: ${rfc2822Date(new Date(input.date.getTime() + 47 * 3600_000))}`]),
    '',
  ];
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  const parts: Buffer[] = [head];
  if (input.includeOriginal === 'full') {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: message/rfc822\r\n\r\n`, 'latin1'), input.original, Buffer.from('\r\n', 'latin1'));
  } else if (input.includeOriginal !== 'none') {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n${crlf(splitHeaderAndBody(input.original).headerText)}\r\n`, 'latin1'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

/** A delivery status notification shaped like the ones Gmail's mailer-daemon sends, in either form. */
export function buildDsn(input: DsnInput): Buffer {
  const status = input.status ?? DEFAULT_STATUS[input.kind];
  const diagnostic = diagnosticOf(input, status);
  return input.form === 'text' ? buildTextNotice(input, status, diagnostic) : buildReportNotice(input, status, diagnostic);
}
