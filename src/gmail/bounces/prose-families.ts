import type { NoticeFormat, RawRecipient } from './types.js';

/*
 * Notices without a usable machine-readable part: each MTA family words its report its
 * own way. Each reader gets the notice's report text (the part before the quoted original)
 * and returns the recipients it names, with the lines that explain each one. The first
 * family whose `matches` fits and that finds a recipient wins (order matters: specific first).
 */

export interface ProseFamily {
  format: NoticeFormat;
  matches: RegExp;
  read(report: string): RawRecipient[];
}

const ADDRESS = String.raw`[^\s<>()"',;:@]+@[^\s<>()"',;:@]+\.[A-Za-z0-9-]+`;
const addressIn = (text: string) => new RegExp(ADDRESS).exec(text)?.[0]?.toLowerCase();

/**
 * Blocks that start at a line matching `start` (group 1 = address, group 2 = rest of the
 * line) and run until the next start, a blank line when `stopAtBlank`, or `end`.
 */
function blocks(report: string, start: RegExp, options: { stopAtBlank?: boolean; end?: RegExp } = {}) {
  const found: { address: string; text: string[] }[] = [];
  let current: { address: string; text: string[] } | undefined;
  for (const line of report.split(/\r?\n/)) {
    if (options.end?.test(line)) break;
    const match = start.exec(line);
    const address = match?.[1] ? addressIn(match[1]) : undefined;
    if (match && address) {
      current = { address, text: match[2] ? [match[2]] : [] };
      found.push(current);
    } else if (current) {
      if (!line.trim()) {
        if (options.stopAtBlank && current.text.length > 0) current = undefined;
        continue;
      }
      current.text.push(line.trim());
    }
  }
  return found;
}

function recipients(found: { address: string; text: string[] }[], action: RawRecipient['action'], shared?: string): RawRecipient[] {
  const byAddress = new Map<string, RawRecipient>();
  for (const block of found) {
    const diagnostic = [block.text.join(' '), shared].filter(Boolean).join(' ');
    const existing = byAddress.get(block.address);
    if (existing) existing.diagnostic = [existing.diagnostic, block.text.join(' ')].filter(Boolean).join(' ');
    else byAddress.set(block.address, { address: block.address, action, ...(diagnostic ? { diagnostic } : {}) });
  }
  return [...byAddress.values()];
}

/** Text after the first line matching `from`, up to `until` (or the end). */
function section(report: string, from: RegExp, until?: RegExp): string | undefined {
  const start = report.search(from);
  if (start === -1) return undefined;
  const rest = report.slice(start).replace(from, '');
  const end = until ? rest.search(until) : -1;
  return (end === -1 ? rest : rest.slice(0, end)).trim() || undefined;
}

/** Gmail / Google Workspace plain-text notices, old ("Delivery to the following recipient…") and new ("** Address not found **"). */
const gmailText: ProseFamily = {
  format: 'gmail-text',
  matches:
    /Delivery to the following recipients? (failed permanently|has been delayed)|Your message wasn't delivered to|There was a temporary problem delivering your message to|\*\* (Address not found|Message not delivered)/i,
  read(report) {
    const delayed = /has been delayed|temporary problem delivering|Message not delivered yet|will retry for/i.test(report);
    // Old notices wrap the remote answer in boilerplate ("…rejected by the recipient domain…"): keep only the answer.
    const remoteAnswer = /The error that the other server returned was:|Technical details of (permanent|temporary) failure:|The response (from the remote server )?was:/i;
    const details =
      section(report, /The error that the other server returned was:/i) ??
      section(report, /Technical details of (permanent|temporary) failure:/i) ??
      section(report, /The response (from the remote server )?was:/i);
    // Recipients are read from Google's own words only, before the remote server's answer: that
    // answer is a stranger's text ("550 Your message wasn't delivered to someone-else@…") and may
    // name anyone.
    const answerAt = report.search(remoteAnswer);
    const googleText = answerAt === -1 ? report : report.slice(0, answerAt);
    const listed = section(googleText, /Delivery to the following recipients? (failed permanently|has been delayed):?/i, /\n\s*\n\s*(?![ \t]*\S+@)/) ?? '';
    const addresses = [...listed.matchAll(new RegExp(ADDRESS, 'g'))].map((m) => m[0].toLowerCase());
    for (const m of googleText.matchAll(new RegExp(String.raw`(?:wasn't delivered to|delivering your message to)\s+(${ADDRESS})`, 'gi'))) addresses.push(m[1]!.toLowerCase());
    return recipients(
      [...new Set(addresses)].map((address) => ({ address, text: [] })),
      delayed ? 'delayed' : 'failed',
      details,
    );
  },
};

const exim: ProseFamily = {
  format: 'exim',
  matches: /(could not be|has not yet been) delivered to one or more of its\s+recipients/i,
  read(report) {
    const delayed = /has not yet been delivered|temporary error|will (try|retry)/i.test(report) && !/permanent error/i.test(report);
    const list = section(report, /(The following address\(es\) failed:|address\(es\) deferred:|recipients\.)/i) ?? report;
    return recipients(blocks(list, new RegExp(String.raw`^ {1,4}<?(${ADDRESS})>?(?:\s*$|\s*:?\s+(.*)$)`)), delayed ? 'delayed' : 'failed');
  },
};

/** qmail, Yahoo (qmail-based), Postfix and others that list `<address>:` followed by the remote answer. */
const angleList: ProseFamily = {
  format: 'qmail',
  matches: /qmail-send program|wasn't able to deliver your message to the following addresses|unable to deliver your message to the following address|following addresses? (had|has) (a )?(permanent|delivery) (fatal )?errors?/i,
  read(report) {
    const delayed = /not yet been delivered|temporary|will (try|retry)/i.test(report) && !/permanent/i.test(report);
    return recipients(blocks(report, new RegExp(String.raw`^\s*<(${ADDRESS})>:?\s*(.*)$`), { stopAtBlank: true }), delayed ? 'delayed' : 'failed');
  },
};

const postfixText: ProseFamily = {
  format: 'postfix-text',
  matches: /This is the mail system at host|I'm sorry to have to inform you that your message could not\s+be delivered/i,
  read(report) {
    const delayed = /delayed|not yet been delivered|will (try|retry)/i.test(report) && !/could not be delivered/i.test(report);
    return recipients(blocks(report, new RegExp(String.raw`^\s*<(${ADDRESS})>(?: \(expanded from [^)]*\))?:\s*(.*)$`), { stopAtBlank: true }), delayed ? 'delayed' : 'failed');
  },
};

/** Exchange 2003 ("did not reach the following recipient(s)") and Exchange 2007+/Office 365 text NDRs. */
const exchange: ProseFamily = {
  format: 'exchange',
  matches: /did not reach the following recipient|following recipient\(s\) could not be reached|Delivery has failed to these recipients|could not be delivered to the following recipients|couldn't be delivered to|Your message to .* couldn't be delivered/i,
  read(report) {
    const delayed = /Delivery is delayed|has not been delivered yet|will keep trying/i.test(report);
    // Exchange 2003: "bob@x on <date>" then indented reasons.
    let found = blocks(report, new RegExp(String.raw`^\s*(${ADDRESS}) on .*$`));
    if (found.length === 0) {
      const list = section(report, /(Delivery has failed to these recipients or (groups|distribution lists)|could not be delivered to the following recipients):?/i, /Diagnostic information for administrators/i) ?? report;
      found = blocks(list, new RegExp(String.raw`^\s*(?:[^<\n]*<mailto:)?(${ADDRESS})>?\s*(?:\(([^)]*)\))?\s*$`));
    }
    // The administrators' part names each address again, with the remote server's answer.
    for (const block of found) {
      const escaped = block.address.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const answer = new RegExp(String.raw`${escaped}[\s\S]{0,200}?Remote Server returned '([^']*)'`, 'i').exec(report)?.[1];
      if (answer) block.text.unshift(answer);
    }
    return recipients(found, delayed ? 'delayed' : 'failed');
  },
};

const opensmtpd: ProseFamily = {
  format: 'opensmtpd',
  matches: /for\s+the\s+following\s+list\s+of\s+recipients:/i,
  read(report) {
    const delayed = /delayed for more than|temporary failure/i.test(report);
    const list = section(report, /list\s+of\s+recipients:/i) ?? report;
    return recipients(blocks(list, new RegExp(String.raw`^\s*(${ADDRESS}):\s*(.*)$`), { stopAtBlank: true }), delayed ? 'delayed' : 'failed');
  },
};

/** Sendmail without its report part: "----- The following addresses had permanent fatal errors -----". */
const sendmailText: ProseFamily = {
  format: 'sendmail-text',
  matches: /The following addresses had (permanent fatal|transient non-fatal) errors/i,
  read(report) {
    const delayed = /transient non-fatal errors/i.test(report) && !/permanent fatal errors/i.test(report);
    const list = section(report, /-+ The following addresses had [^\n]*errors -+/i, /-+ Transcript of session follows -+/i) ?? report;
    return recipients(blocks(list, new RegExp(String.raw`^\s*<?(${ADDRESS})>?\s*(.*)$`), { stopAtBlank: true }), delayed ? 'delayed' : 'failed');
  },
};

const amazonSes: ProseFamily = {
  format: 'amazonses-text',
  matches: /The following message to <[^>]+> was undeliverable/i,
  read(report) {
    const address = addressIn(/The following message to <([^>]+)>/i.exec(report)?.[1] ?? '');
    if (!address) return [];
    return recipients([{ address, text: [section(report, /The reason for the problem:/i) ?? ''] }], 'failed');
  },
};

export const PROSE_FAMILIES: ProseFamily[] = [gmailText, exim, opensmtpd, exchange, sendmailText, amazonSes, postfixText, angleList];

/** Where the quoted original starts in a text notice (everything above it is the report). */
export const ORIGINAL_MARKER =
  /^[ \t]*(?:-{2,}[ \t]*(?:Original message|Returned message|Original message follows|This is a copy of the message[^\n]*|Below this line is a copy of the message\.?)[ \t]*-*|-{2,}[ \t]*Below this line is a copy of the message\.?|Below is a copy of the original message:|Original message headers:|-+ ?Original message follows ?-+|------ This is a copy of the message[^\n]*)[ \t]*$/im;

export function splitReport(text: string): { report: string; quoted?: string } {
  const match = ORIGINAL_MARKER.exec(text);
  if (!match) return { report: text };
  return { report: text.slice(0, match.index), quoted: text.slice(match.index + match[0].length) };
}
