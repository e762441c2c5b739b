import { describe, expect, it } from 'vitest';
import { readBounceNotice } from './read-notice.js';
import { statusAbout } from './status.js';

/*
 * A permanent failure that says the SENDER's side was refused — our user's address or domain,
 * the sending host or IP, its authentication — says nothing bad about the recipient's address:
 * soft (`policy`), never hard. A wrong "hard" silences a real person for good. First found by an
 * attacker: "address rejected", "does not exist", "was not found" were read as "user unknown"
 * before any word saying whose address it was, and a 5.1.1 that Exim's sender callout quotes
 * about the sender's address replaced the report's own 5.0.0.
 */

const RECIPIENT = 'ann@contoso.test';

/** Google's report form: multipart/report with message/delivery-status. */
function report(diagnostic: string, status = '5.0.0'): Buffer {
  return Buffer.from(
    [
      'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
      'To: sender@acme.test',
      'Subject: Delivery Status Notification (Failure)',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '',
      'Your message could not be delivered.',
      '',
      '--b',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.google.com',
      '',
      `Final-Recipient: rfc822; ${RECIPIENT}`,
      'Action: failed',
      `Status: ${status}`,
      `Diagnostic-Code: smtp; ${diagnostic}`,
      '',
      '--b--',
      '',
    ].join('\r\n'),
  );
}

/** A Postfix text notice with no report part: the remote server's words and no code at all. */
function prose(answer: string): Buffer {
  return Buffer.from(
    [
      'From: MAILER-DAEMON@mx.acme.test (Mail Delivery System)',
      'To: sender@acme.test',
      'Subject: Undelivered Mail Returned to Sender',
      '',
      'This is the mail system at host mx.acme.test.',
      '',
      "I'm sorry to have to inform you that your message could not",
      'be delivered to one or more recipients.',
      '',
      `<${RECIPIENT}>: host mx.contoso.test[192.0.2.25] said: ${answer}`,
      '',
    ].join('\n'),
  );
}

async function onlyRecipient(raw: Buffer) {
  const notice = await readBounceNotice(raw);
  expect(notice?.recipients.map((r) => r.address)).toEqual([RECIPIENT]);
  return notice!.recipients[0]!;
}

const REPORTED: [name: string, diagnostic: string][] = [
  // Exim's sender callout: the recipient's server asked OUR server about OUR address, and quotes its 5.1.1.
  [
    'sender verify (callout) quoting 550 5.1.1 about the sender',
    '550-Verification failed for <sender@acme.test> 550-Called: 192.0.2.25 550-Sent: RCPT TO:<sender@acme.test> 550-Response: 550 5.1.1 <sender@acme.test>: Recipient address rejected: User unknown 550 Sender verify failed',
  ],
  ['Postfix reject_unknown_sender_domain, no enhanced code', '550 <sender@acme.test>: Sender address rejected: Domain not found'],
  ['sender domain does not exist (553 5.0.0)', '553 5.0.0 Sender domain acme.test does not exist'],
];

const PROSE_ONLY: [name: string, answer: string][] = [
  ['a block list (Spamhaus)', 'Client host rejected: 192.0.2.1 blocked using zen.spamhaus.org; address rejected'],
  ['an SPF failure naming our domain', 'SPF check failed: the domain acme.test does not exist'],
  ['no reverse DNS for our host', 'The reverse DNS of 192.0.2.1 was not found'],
  ['a relay refusal', 'Relay access denied: mailbox could not be found'],
];

describe('a refusal of the sender is soft (policy), never a hard bounce of the recipient', () => {
  for (const [name, diagnostic] of REPORTED) {
    it(`report form: ${name}`, async () => {
      const r = await onlyRecipient(report(diagnostic));
      expect({ class: r.class, reason: r.reason }, `${r.status} ${r.reason}`).toEqual({ class: 'soft', reason: 'policy' });
    });
  }
  for (const [name, answer] of PROSE_ONLY) {
    it(`no code at all: ${name}`, async () => {
      const r = await onlyRecipient(prose(answer));
      expect({ class: r.class, reason: r.reason }, `${r.status} ${r.reason}`).toEqual({ class: 'soft', reason: 'policy' });
    });
  }

  it("a code quoted about another address does not replace the report's own status; one about the recipient still does", async () => {
    expect((await onlyRecipient(report(REPORTED[0]![1]))).status).toBe('5.0.0');
    expect(statusAbout('550 5.1.1 <sender@acme.test>: Recipient address rejected: User unknown', [RECIPIENT])).toBeUndefined();
    expect(statusAbout(`550 5.1.1 <${RECIPIENT}>: Recipient address rejected: User unknown`, [RECIPIENT])).toBe('5.1.1');
    // A policy code is read wherever it stands: refusing our address is the refusal's reason.
    expect(statusAbout('550 5.7.1 <sender@acme.test>... Access denied', [RECIPIENT])).toBe('5.7.1');
  });
});

describe('the recipient is still hard when the report or the words say the recipient is unknown', () => {
  it.each([
    ['Postfix with its own 5.1.1 (relay recipient table)', `550 5.1.1 <${RECIPIENT}>: Recipient address rejected: User unknown in relay recipient table`, '5.1.1'],
    ["Gmail's 5.1.1", '550-5.1.1 The email account that you tried to reach does not exist.', '5.1.1'],
    ['a generic 5.0.0 with unknown-user words', '550 No such user here', '5.0.0'],
    [
      "an unknown user answered through Barracuda's hosted filter (its host's name is no block list)",
      `550 5.1.1 <${RECIPIENT}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command) host d1234.ess.barracudanetworks.com`,
      '5.1.1',
    ],
    [
      "Microsoft 365's Directory-Based Edge Blocking (its 'access denied' means no such recipient)",
      '550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM10FT012.eop-nam10.prod.protection.outlook.com]',
      '5.4.1',
    ],
  ])('%s', async (_name, diagnostic, status) => {
    const r = await onlyRecipient(report(diagnostic, status));
    expect({ class: r.class, reason: r.reason }).toEqual({ class: 'hard', reason: 'unknown_user' });
  });

  it.each([
    ['user unknown', '550 User unknown'],
    ['Lotus Domino', 'User not listed in public Name & Address Book'],
  ])('no code: %s', async (_name, answer) => {
    const r = await onlyRecipient(prose(answer));
    expect({ class: r.class, reason: r.reason }).toEqual({ class: 'hard', reason: 'unknown_user' });
  });
});
