import { randomBytes } from 'node:crypto';
import { splitHeaderAndBody } from './mime.js';

export type BounceKind = 'hard' | 'soft';

export interface DsnInput {
  /** The mailbox that sent the original and now receives the report. */
  to: string;
  /** The address that could not be reached. */
  recipient: string;
  kind: BounceKind;
  /** The original message as sent (its headers are quoted; its Message-ID threads the report). */
  original: Buffer;
  originalMessageId?: string;
  /** Enhanced status code; default 5.1.1 (hard) or 4.2.2 (soft). */
  status?: string;
  diagnostic?: string;
  /** `headers` (default): a text/rfc822-headers part; `full`: the whole original as message/rfc822. */
  includeOriginal?: 'headers' | 'full';
  date: Date;
}

const MAILER_DAEMON = 'Mail Delivery Subsystem <mailer-daemon@googlemail.com>';

function rfc2822Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}

/**
 * A delivery status notification shaped like the ones Gmail's mailer-daemon sends
 * (RFC 3464 multipart/report): a human part, the machine-readable
 * message/delivery-status part, then the original's headers.
 */
export function buildDsn(input: DsnInput): Buffer {
  const hard = input.kind === 'hard';
  const status = input.status ?? (hard ? '5.1.1' : '4.2.2');
  const diagnostic =
    input.diagnostic ??
    (hard
      ? `550-${status} The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.`
      : `452-${status} The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp`);
  const boundary = `sandbox-dsn-${randomBytes(8).toString('hex')}`;
  const date = rfc2822Date(input.date);
  const domain = input.recipient.split('@')[1] ?? 'unknown.invalid';
  const originalHeaders = splitHeaderAndBody(input.original).headerText.replace(/\r?\n/g, '\r\n');
  const threading = input.originalMessageId
    ? [`In-Reply-To: ${input.originalMessageId}`, `References: ${input.originalMessageId}`]
    : [];

  const human = hard
    ? [
        '** Address not found **',
        '',
        `Your message wasn't delivered to ${input.recipient} because the address couldn't be found, or is unable to receive mail.`,
        '',
        'The response from the remote server was:',
        diagnostic,
      ]
    : [
        '** Message not delivered yet **',
        '',
        `There was a temporary problem delivering your message to ${input.recipient}. Gmail will retry for 47 more hours. You'll be notified if the delivery fails permanently.`,
        '',
        'The response from the remote server was:',
        diagnostic,
      ];

  const lines = [
    'Return-Path: <>',
    `Received: from sandbox.mx.google.com by sandbox.mx.google.com with SMTP id ${randomBytes(6).toString('hex')}; ${date}`,
    `From: ${MAILER_DAEMON}`,
    `To: ${input.to}`,
    `Auto-Submitted: auto-replied`,
    `Subject: Delivery Status Notification (${hard ? 'Failure' : 'Delay'})`,
    ...threading,
    `X-Failed-Recipients: ${input.recipient}`,
    `Message-ID: <sandbox-dsn-${randomBytes(10).toString('hex')}@mx.google.com>`,
    `Date: ${date}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; boundary="${boundary}"; report-type=delivery-status`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset="UTF-8"',
    '',
    ...human,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; googlemail.com',
    `Arrival-Date: ${date}`,
    '',
    `Final-Recipient: rfc822; ${input.recipient}`,
    `Action: ${hard ? 'failed' : 'delayed'}`,
    `Status: ${status}`,
    `Remote-MTA: dns; mx.${domain}`,
    `Diagnostic-Code: smtp; ${diagnostic}`,
    `Last-Attempt-Date: ${date}`,
    ...(hard ? [] : [`Will-Retry-Until: ${rfc2822Date(new Date(input.date.getTime() + 47 * 3600_000))}`]),
    '',
    `--${boundary}`,
  ];
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  const originalPart =
    input.includeOriginal === 'full'
      ? Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\n\r\n', 'latin1'), input.original])
      : Buffer.from(`Content-Type: text/rfc822-headers\r\n\r\n${originalHeaders}\r\n`, 'latin1');
  return Buffer.concat([head, originalPart, Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')]);
}
