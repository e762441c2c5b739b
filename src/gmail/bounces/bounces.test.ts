import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isAutomaticReply } from './auto-reply.js';
import { readBounceNotice } from './read-notice.js';
import { classOf, finishRecipient, reasonOf, statusFromText } from './status.js';
import type { BounceClass, NoticeFormat } from './types.js';

/*
 * The project's own notices, shaped like the ones people receive (written for this table,
 * not copied from any corpus): each with the recipients, class and status it must yield.
 */

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)));

type Expected = { address: string; class: BounceClass; status?: string; action?: 'failed' | 'delayed' };
const TABLE: [file: string, format: NoticeFormat, originalMessageId: string | undefined, recipients: Expected[]][] = [
  ['gmail-text-failure.eml', 'gmail-text', 'campaign-0001@acme.test', [{ address: 'ghost@contoso.test', class: 'hard', status: '5.1.1', action: 'failed' }]],
  ['gmail-text-delay.eml', 'gmail-text', 'campaign-0002@acme.test', [{ address: 'busy@contoso.test', class: 'delay', action: 'delayed' }]],
  ['gmail-text-full-mailbox.eml', 'gmail-text', 'campaign-0003@acme.test', [{ address: 'hoarder@contoso.test', class: 'soft', status: '5.2.2' }]],
  ['gmail-report-hard.eml', 'rfc3464', 'campaign-0004@acme.test', [{ address: 'nobody@fabrikam.test', class: 'hard', status: '5.1.1' }]],
  ['gmail-report-delay.eml', 'rfc3464', 'campaign-0005@acme.test', [{ address: 'later@fabrikam.test', class: 'delay', status: '4.4.1', action: 'delayed' }]],
  ['report-without-status-part.eml', 'postfix-text', 'campaign-0006@acme.test', [{ address: 'left@contoso.test', class: 'hard', status: '5.2.1' }]],
  [
    'postfix-two-recipients.eml',
    'rfc3464',
    'campaign-0007@acme.test',
    [
      { address: 'sam@northwind.test', class: 'hard', status: '5.1.1' },
      { address: 'max@northwind.test', class: 'soft', status: '5.2.2' },
    ],
  ],
  ['exim-failure.eml', 'exim', 'campaign-0008@acme.test', [{ address: 'nemo@tailspin.test', class: 'hard', status: '5.1.1' }]],
  ['exim-delay.eml', 'exim', undefined, [{ address: 'slow@tailspin.test', class: 'delay', action: 'delayed' }]],
  ['qmail-failure.eml', 'qmail', 'campaign-0009@acme.test', [{ address: 'olduser@wingtip.test', class: 'hard', status: '5.1.1' }]],
  ['sendmail-failure.eml', 'rfc3464', 'campaign-0010@acme.test', [{ address: 'blocked@adatum.test', class: 'soft', status: '5.7.1' }]],
  ['exchange2003-text.eml', 'exchange', undefined, [{ address: 'pat@litware.test', class: 'hard', status: '5.1.1' }]],
  ['office365-ndr.eml', 'exchange', 'campaign-0011@acme.test', [{ address: 'jo@fourthcoffee.test', class: 'hard', status: '5.1.10' }]],
  ['amazonses-text.eml', 'amazonses-text', 'campaign-0012@acme.test', [{ address: 'quota@proseware.test', class: 'soft', status: '5.2.2' }]],
  ['yahoo-failure.eml', 'qmail', 'campaign-0013@acme.test', [{ address: 'gone.away@yahoo.test', class: 'hard', status: '5.1.1' }]],
];

describe('bounce reader: the fixture table', () => {
  it.each(TABLE)('%s → %s', async (file, format, originalMessageId, expected) => {
    const notice = await readBounceNotice(fixture(file));
    expect(notice).toBeDefined();
    expect(notice!.format).toBe(format);
    expect(notice!.originalMessageId).toBe(originalMessageId);
    expect(notice!.recipients.map((r) => r.address)).toEqual(expected.map((e) => e.address));
    for (const [i, e] of expected.entries()) {
      const got = notice!.recipients[i]!;
      expect(got.class).toBe(e.class);
      if (e.status) expect(got.status).toBe(e.status);
      expect(got.action).toBe(e.action ?? 'failed');
      expect(got.diagnostic?.length ?? 0).toBeLessThanOrEqual(300);
    }
  });

  it('a notice naming no failed recipient is not a bounce (counted as unparsed by the sync)', async () => {
    expect(await readBounceNotice(fixture('forged-no-report.eml'))).toBeUndefined();
  });

  it('never names the notice\'s own addressee (the sender) as a failed recipient', async () => {
    const raw = Buffer.from(
      'From: MAILER-DAEMON@x.test\nTo: alice@acme.test\nX-Failed-Recipients: alice@acme.test, bob@x.test\nSubject: failure notice\n\nSorry.\n',
    );
    expect((await readBounceNotice(raw))!.recipients.map((r) => r.address)).toEqual(['bob@x.test']);
  });

  it("reads Gmail's failed recipients from Google's own words, never from the remote server's answer it quotes", async () => {
    const raw = Buffer.from(
      'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: alice@acme.test\nSubject: Delivery Status Notification (Failure)\n\n' +
        "** Address not found **\n\nYour message wasn't delivered to mischief@evil.test because the address couldn't be found.\n\n" +
        "The response was:\n\n550 5.1.1 Your message wasn't delivered to bystander@big.test because the address couldn't be found\n",
    );
    expect((await readBounceNotice(raw))!.recipients.map((r) => r.address)).toEqual(['mischief@evil.test']);
  });
});

describe('status codes and classes', () => {
  it('finds the enhanced status after the SMTP code, not inside an IP address', () => {
    expect(statusFromText('host 10.2.3.4 said: 550 5.1.1 <a@x>... User unknown')).toBe('5.1.1');
    expect(statusFromText('550-5.7.26 This mail has been blocked')).toBe('5.7.26');
    expect(statusFromText('Remote host said: 550 no mailbox here (#5.1.1)')).toBe('5.1.1');
    expect(statusFromText('host 192.0.2.135 timed out')).toBeUndefined();
  });

  it('hard only when the address itself is bad; blocks, full mailboxes and unknown reasons are soft; delays are delays', () => {
    expect(classOf('failed', '5.1.1', reasonOf('5.1.1', undefined))).toBe('hard');
    expect(classOf('failed', '5.2.1', reasonOf('5.2.1', undefined))).toBe('hard');
    expect(classOf('failed', '5.2.2', reasonOf('5.2.2', undefined))).toBe('soft');
    expect(classOf('failed', '5.7.1', reasonOf('5.7.1', 'user unknown'))).toBe('soft');
    expect(classOf('failed', '5.1.8', reasonOf('5.1.8', 'Sender address rejected'))).toBe('soft');
    expect(classOf('failed', '4.1.1', reasonOf('4.1.1', undefined))).toBe('soft');
    expect(classOf('failed', undefined, reasonOf(undefined, 'socket error'))).toBe('soft');
    expect(classOf('delayed', '5.1.1', 'unknown_user')).toBe('delay');
  });

  it('reads the status from the prose when the report has none: a generic 5.0.0 gives way to a specific quoted one', () => {
    expect(finishRecipient({ address: 'a@x.test', action: 'failed', status: '5.0.0', diagnostic: "5.1.0 - Unknown address error 550-'5.7.1 denied'" })).toMatchObject({
      status: '5.1.0',
      class: 'hard',
      reason: 'unknown_user',
    });
    expect(finishRecipient({ address: 'a@x.test', action: 'failed', diagnostic: '550 Unknown user a@x.test' })).toMatchObject({ status: '5.1.1', class: 'hard' });
    expect(finishRecipient({ address: 'a@x.test', action: 'failed', diagnostic: 'mailbox is full' })).toMatchObject({ status: '5.2.2', class: 'soft' });
    expect(finishRecipient({ address: 'a@x.test', action: 'delayed', diagnostic: '451 try again later' })).toMatchObject({ status: '4.0.0', class: 'delay' });
  });
});

describe('automatic replies', () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ['RFC 3834 Auto-Submitted', { 'auto-submitted': 'auto-replied', subject: 'Re: Hello' }, true],
    ['Auto-Submitted: no', { 'auto-submitted': 'no', subject: 'Re: Hello' }, false],
    ['X-Autoreply', { 'x-autoreply': 'yes', subject: 'Re: Hello' }, true],
    ['X-Autorespond', { 'x-autorespond': 'Hello', subject: 'Hello' }, true],
    ['Precedence: auto_reply', { precedence: 'auto_reply', subject: 'Hello' }, true],
    ['English out-of-office subject', { subject: 'Out of Office: Hello' }, true],
    ['Exchange "Automatic reply"', { subject: 'Automatic reply: Hello' }, true],
    ['German', { subject: 'Abwesenheitsnotiz: Hello' }, true],
    ['German (Outlook)', { subject: 'Automatische Antwort: Hello' }, true],
    ['French', { subject: 'Réponse automatique : Hello' }, true],
    ['Spanish', { subject: 'Respuesta automática: Hello' }, true],
    ['Italian', { subject: 'Risposta automatica: Hello' }, true],
    ['Portuguese', { subject: 'Resposta automática: Hello' }, true],
    ['Dutch', { subject: 'Automatisch antwoord: Hello' }, true],
    ['Swedish', { subject: 'Autosvar: Hello' }, true],
    ['Japanese', { subject: '自動返信: Hello' }, true],
    ['hyphenated', { subject: 'Out-of-office: Hello' }, true],
    ['"OOO"', { subject: 'OOO: Hello' }, true],
    ['a bracketed tag', { subject: '[Auto-Reply] Hello' }, true],
    ['a parenthesized tag', { subject: '(Out of Office) Hello' }, true],
    ['a word that starts with ooo', { subject: 'Ooooh, nice offer' }, false],
    ['an exclamation, not a tag', { subject: 'Ooo, nice offer' }, false],
    ['"OOO" and a date', { subject: 'OOO until Monday' }, true],
    ['a person answering a campaign about out-of-office etiquette', { subject: 'Re: Out of office etiquette' }, false],
    ['a person', { subject: 'Re: Hello' }, false],
  ];
  it.each(cases)('%s', (_name, headers, automatic) => {
    expect(isAutomaticReply(headers)).toBe(automatic);
  });
});
