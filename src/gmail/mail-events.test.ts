import { describe, expect, it } from 'vitest';
import { parseDeliveryStatus } from './bounces/delivery-status.js';
import { readBounceNotice } from './bounces/read-notice.js';
import { classifyMessage, isAutomaticReply, looksLikeDsn, parseAddressList, parseMessageIds, type MessageHeaders } from './mail-events.js';

const crlf = (lines: string[]) => Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');

/** As Gmail's mailer-daemon sends it: human part, delivery-status, the original's headers. */
const GMAIL_HARD_DSN = crlf([
  'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
  'To: alice@acme.test',
  'Auto-Submitted: auto-replied',
  'Subject: Delivery Status Notification (Failure)',
  'In-Reply-To: <orig-1@acme.test>',
  'References: <orig-1@acme.test>',
  'X-Failed-Recipients: nobody@contoso.test',
  'Message-ID: <dsn-1@mx.google.com>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/report; boundary="b1"; report-type=delivery-status',
  '',
  '--b1',
  'Content-Type: text/plain; charset="UTF-8"',
  '',
  '** Address not found **',
  'Status: 2.0.0 (this human text must not be read as the status)',
  '',
  '--b1',
  'Content-Type: message/delivery-status',
  '',
  'Reporting-MTA: dns; googlemail.com',
  '',
  'Final-Recipient: rfc822; Nobody@Contoso.test',
  'Action: failed',
  'Status: 5.1.1',
  'Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does',
  '  not exist.',
  '',
  '--b1',
  'Content-Type: text/rfc822-headers',
  '',
  'From: alice@acme.test',
  'To: nobody@contoso.test',
  'Subject: Hello',
  'Message-ID: <orig-1@acme.test>',
  '',
  '--b1--',
]);

/** Postfix-style: two recipients (one permanent, one delayed), the whole original attached, no threading headers. */
const POSTFIX_MIXED_DSN = crlf([
  'From: MAILER-DAEMON@mail.contoso.test (Mail Delivery System)',
  'To: alice@acme.test',
  'Subject: Undelivered Mail Returned to Sender',
  'Message-ID: <dsn-2@mail.contoso.test>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/report; report-type=delivery-status;',
  '\tboundary="pf"',
  '',
  '--pf',
  'Content-Description: Notification',
  'Content-Type: text/plain; charset=us-ascii',
  '',
  'I am the Postfix program.',
  '',
  '--pf',
  'Content-Description: Delivery report',
  'Content-Type: message/delivery-status',
  '',
  'Reporting-MTA: dns; mail.contoso.test',
  'X-Postfix-Queue-ID: 4F3C2',
  '',
  'Final-Recipient: rfc822; gone@contoso.test',
  'Original-Recipient: rfc822;gone@contoso.test',
  'Action: failed',
  'Status: 5.1.1',
  '',
  'Final-Recipient: rfc822; full@contoso.test',
  'Action: delayed',
  'Status: 4.2.2',
  '',
  'Final-Recipient: rfc822; fine@contoso.test',
  'Action: delivered',
  'Status: 2.0.0',
  '',
  '--pf',
  'Content-Description: Undelivered Message',
  'Content-Type: message/rfc822',
  '',
  'From: alice@acme.test',
  'To: gone@contoso.test, full@contoso.test, fine@contoso.test',
  'Subject: Quarterly numbers',
  'Message-ID: <orig-2@acme.test>',
  '',
  'The secret quarterly numbers are 42.',
  '',
  '--pf--',
]);

const headersOf = (raw: Buffer): MessageHeaders => {
  const head = raw.toString('utf8').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
  const headers: MessageHeaders = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).toLowerCase()] ??= line.slice(i + 1).trim();
  }
  return headers;
};

describe('address and Message-ID headers', () => {
  it('parses address lists: names, case, groups, duplicates', () => {
    expect(parseAddressList('"Bob, Jr." <Bob@Contoso.TEST>, carol@contoso.test, team: dave@x.test, erin@x.test;, bob@contoso.test')).toEqual([
      'bob@contoso.test',
      'carol@contoso.test',
      'dave@x.test',
      'erin@x.test',
    ]);
    expect(parseAddressList(undefined)).toEqual([]);
    expect(parseAddressList('undisclosed-recipients:;')).toEqual([]);
  });

  it('parses Message-IDs with or without angle brackets', () => {
    expect(parseMessageIds('<a@x.test> <b@x.test>\r\n <a@x.test>')).toEqual(['a@x.test', 'b@x.test']);
    expect(parseMessageIds('bare@x.test')).toEqual(['bare@x.test']);
    expect(parseMessageIds('not an id')).toEqual([]);
  });
});

describe('bounce detection (DSN)', () => {
  it('knows a DSN by its sender or by multipart/report; delivery-status', () => {
    expect(looksLikeDsn({ from: 'Mail Delivery Subsystem <mailer-daemon@googlemail.com>' })).toBe(true);
    expect(looksLikeDsn({ from: 'postmaster@contoso.test' })).toBe(true);
    expect(looksLikeDsn({ from: 'relay@contoso.test', 'content-type': 'multipart/report; report-type="delivery-status"; boundary=x' })).toBe(true);
    expect(looksLikeDsn({ from: 'bob@contoso.test', 'content-type': 'multipart/report; report-type=disposition-notification' })).toBe(false);
    expect(looksLikeDsn({ from: 'bob@contoso.test', 'content-type': 'text/plain' })).toBe(false);
  });

  it('knows Gmail\'s plain-text notices and others by X-Failed-Recipients or their subject', () => {
    expect(looksLikeDsn({ from: 'relay@contoso.test', 'x-failed-recipients': 'gone@contoso.test' })).toBe(true);
    expect(looksLikeDsn({ from: 'System Administrator <admin@contoso.test>', subject: 'Undeliverable: Hello' })).toBe(true);
    expect(looksLikeDsn({ from: 'bob@contoso.test', subject: 'Re: Undeliverable: Hello' })).toBe(false);
  });

  it('a Gmail hard bounce: recipient, 5.1.1, and the original Message-ID from text/rfc822-headers', async () => {
    const notice = (await readBounceNotice(GMAIL_HARD_DSN))!;
    expect(notice).toMatchObject({
      format: 'rfc3464',
      recipients: [{ address: 'nobody@contoso.test', status: '5.1.1', action: 'failed', class: 'hard', reason: 'unknown_user' }],
      originalMessageId: 'orig-1@acme.test',
    });
    expect(notice.recipients[0]!.diagnostic).toMatch(/^550-5\.1\.1 The email account that you tried to reach does not exist\.$/);
    expect(classifyMessage({ direction: 'inbound', headers: headersOf(GMAIL_HARD_DSN), notice })).toEqual({
      type: 'bounce',
      quotedMessageId: 'orig-1@acme.test',
      threadingIds: ['orig-1@acme.test'],
      notice,
    });
  });

  it('a Postfix report: per-recipient classes, delivered recipients ignored, the original from message/rfc822', async () => {
    const notice = (await readBounceNotice(POSTFIX_MIXED_DSN))!;
    expect(notice.originalMessageId).toBe('orig-2@acme.test');
    expect(notice.recipients).toMatchObject([
      { address: 'gone@contoso.test', status: '5.1.1', action: 'failed', class: 'hard' },
      { address: 'full@contoso.test', status: '4.2.2', action: 'delayed', class: 'delay' },
    ]);
    const classified = classifyMessage({ direction: 'inbound', headers: headersOf(POSTFIX_MIXED_DSN), notice });
    // No In-Reply-To/References on this one: the quoted original is the only link.
    expect(classified).toMatchObject({ type: 'bounce', quotedMessageId: 'orig-2@acme.test', threadingIds: [] });
  });

  it('a delivery-status with only successes is not a bounce, and a notice the reader cannot read is neither', () => {
    expect(parseDeliveryStatus('Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@x.test\nAction: delivered\nStatus: 2.0.0\n')).toEqual([]);
    const headers = { from: 'mailer-daemon@x.test', 'in-reply-to': '<orig@acme.test>' };
    expect(classifyMessage({ direction: 'inbound', headers })).toEqual({ type: 'other' });
  });

  it('a notice that names no original message still is a bounce: the sync matches it by recipient and time', async () => {
    const notice = { format: 'x-failed-recipients' as const, recipients: [{ address: 'a@x.test', action: 'failed' as const, class: 'hard' as const, reason: 'unknown_user' as const }] };
    expect(classifyMessage({ direction: 'inbound', headers: { from: 'mailer-daemon@x.test' }, notice })).toEqual({ type: 'bounce', threadingIds: [], notice });
  });
});

describe('reply detection', () => {
  it('an inbound message with In-Reply-To/References is a reply candidate, In-Reply-To first, then References newest first', () => {
    const headers = { from: 'bob@contoso.test', 'in-reply-to': '<c@acme.test>', references: '<a@acme.test> <b@acme.test> <c@acme.test>' };
    expect(classifyMessage({ direction: 'inbound', headers })).toEqual({
      type: 'reply',
      originalMessageIds: ['c@acme.test', 'b@acme.test', 'a@acme.test'],
      automatic: false,
    });
  });

  it('out-of-office and other automatic answers are marked automatic', () => {
    expect(isAutomaticReply({ 'auto-submitted': 'auto-replied' })).toBe(true);
    expect(isAutomaticReply({ 'auto-submitted': 'no' })).toBe(false);
    expect(isAutomaticReply({ 'x-autoreply': 'yes' })).toBe(true);
    expect(isAutomaticReply({ precedence: 'auto_reply' })).toBe(true);
    expect(isAutomaticReply({ precedence: 'list' })).toBe(false);
    expect(isAutomaticReply({ subject: 'Out of Office: Our offer' })).toBe(true);
    expect(isAutomaticReply({ subject: 'Re: Out of office tips' })).toBe(false);
    const headers = { from: 'bob@contoso.test', 'in-reply-to': '<c@acme.test>', 'auto-submitted': 'auto-replied' };
    expect(classifyMessage({ direction: 'inbound', headers })).toMatchObject({ type: 'reply', automatic: true });
  });

  it('new mail, and anything outbound, is neither reply nor bounce', () => {
    expect(classifyMessage({ direction: 'inbound', headers: { from: 'bob@contoso.test' } })).toEqual({ type: 'other' });
    expect(classifyMessage({ direction: 'outbound', headers: { from: 'alice@acme.test', 'in-reply-to': '<c@acme.test>' } })).toEqual({ type: 'other' });
    expect(classifyMessage({ direction: 'outbound', headers: headersOf(GMAIL_HARD_DSN) })).toEqual({ type: 'other' });
  });
});
