import type { BounceClass, BounceReason, FailedRecipient, RawRecipient } from './types.js';

/*
 * Status codes and classes. A notice's report gives an enhanced status (RFC 3463) when it
 * has one; otherwise it is read from the prose (`550 5.1.1 …`, `#5.5.0`, "mailbox full",
 * "user unknown"…). The class decides what happens to the address:
 *
 *   delay  Action: delayed — the server is still trying. Recorded, never suppresses.
 *   hard   a permanent failure that says the ADDRESS is bad: unknown user (5.1.x),
 *          mailbox disabled (5.2.1), domain does not route (5.1.2, 5.4.4) — suppress now.
 *   soft   every other failure: temporary codes (4.x.x), mailbox full (x.2.2), policy and
 *          spam blocks (x.7.x, about the sender more than the address), any refusal of
 *          the sender's side in words (SENDER_SIDE), size, network, a permanent failure
 *          with no reason given. Counted; BOUNCE_SOFT_LIMIT of them
 *          within BOUNCE_SOFT_WINDOW_DAYS suppress the address.
 *
 * Soft is the default on purpose: a wrong "hard" silences a real person for good, a wrong
 * "soft" costs at most a few more attempts.
 */

/** An enhanced status after an SMTP reply code (`550 5.1.1`, `550-5.1.1`, `554 554 5.7.0`): the most reliable place. */
const STATUS_AFTER_REPLY = /\b[245]\d\d(?:[ -][245]\d\d)?[ -]#?([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)/;
/** An enhanced status anywhere, not inside an IP address or a version number. */
const STATUS_ANYWHERE = /(?<![\w.])#?([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)/;
/** A bare SMTP reply code (`550 Unknown user`, `said: 452`). */
const REPLY_CODE = /(?<![\w.-])([45])([0-5])\d(?=[ -][A-Za-z<#]|$)/m;

/**
 * Wording that says the SENDER's side was refused — our user's address or domain (sender
 * verify, callout, MAIL FROM), the sending host or IP (client host, HELO, reverse DNS/PTR, block
 * lists — Barracuda's by its list's domain, barracudacentral: its hosted filter relays ordinary
 * "user unknown" answers from barracudanetworks.com hosts), or its authentication (SPF, DKIM,
 * DMARC). Such a refusal says nothing about the recipient's address, whatever code or "does not exist" / "not found" it quotes (that is the
 * sender's domain, or our host's name): it wins over every other reading and is `policy`, soft.
 */
const SENDER_SIDE =
  /\bsender\b|verif(y|ication) failed|\bcallout\b|client host|(after|in reply to) mail from|mail from (domain|address)|\bmail from:? ?<?\S+>? (was )?(rejected|refused|denied)|\b(helo|ehlo)\b|reverse (dns|lookup|hostname)|\brdns\b|\bptr\b|relay(ing)? (access )?(denied|not (allowed|permitted))|unable to relay|\b(spf|dkim|dmarc)\b|block ?list|black ?list|\b(dnsbl|rbl)\b|spamhaus|spamcop|barracudacentral|blocked using|your (ip|host|server|mail server)\b|\bip address\b/i;

/**
 * Prose readings, first match wins. `policy` comes before `unknown_user` on purpose: "address
 * rejected", "does not exist", "was not found" do not say whose address, and a notice that
 * also speaks of blocks, spam or policy is not one that says the recipient is unknown.
 */
const PROSE: [BounceReason, RegExp][] = [
  // Microsoft 365's Directory-Based Edge Blocking ("550 5.4.1 Recipient address rejected: Access
  // denied"): the tenant has no such recipient. Its "access denied" is not a policy block.
  ['unknown_user', /recipient address rejected: access denied/i],
  ['policy', /blocked|spam|blacklist|block ?list|(?<!not )listed (at|in|on|by)|policy|access denied|not allowed|authentication (required|failed)|\b(dmarc|spf)\b/i],
  [
    'unknown_user',
    /user unknown|unknown user|no such (user|mailbox|recipient|address)|does ?n[o']t exist|address (not found|couldn't be found|rejected)|recipient (not found|address rejected|name is not recognized)|unknown (recipient|address)|invalid (recipient|mailbox|address)|not a valid (recipient|mailbox)|mailbox (not found|unavailable|does not exist)|recipnotfound|(couldn't|could not) be found|(wasn't|was not) found|not listed in|no mailbox here|unrouteable address|undeliverable address|do(es)?n[o']t have an? [\w.-]+ account|no such account|account (does not|doesn't) exist/i,
  ],
  ['mailbox_full', /mailbox (is )?full|over ?quota|quota exceeded|exceeded (the )?(storage|quota)|insufficient (storage|disk)|out of storage/i],
  ['mailbox_disabled', /(account|mailbox|user) (is )?(disabled|deactivated|inactive|suspended|expired)|account has been disabled/i],
  ['bad_domain', /domain (not found|does not exist|name not found)|host (or domain name )?not found|name service error|no mx (record|host)|unrouteable domain/i],
  ['message_too_large', /too (large|big)|size (limit|exceeds)|exceeds .*size/i],
  ['network', /connection (refused|timed out|reset|lost)|timed? ?out|socket error|network error|could not connect|no route to host|unable to connect|did not accept our requests to connect/i],
];

/** The enhanced status in a piece of prose, if it quotes one. */
export function statusFromText(text: string | undefined): string | undefined {
  if (!text) return undefined;
  return STATUS_AFTER_REPLY.exec(text)?.[1] ?? STATUS_ANYWHERE.exec(text)?.[1];
}

const ADDRESS_REASONS = new Set<BounceReason>(['unknown_user', 'mailbox_disabled', 'bad_domain']);

const ADDRESS_IN_TEXT = /[^\s<>()[\]"',;:@]+@[^\s<>()[\]"',;:@]+\.[A-Za-z0-9-]+/g;
/** Where one server answer starts: a new line, or a reply code (`550-`, `550 `) not inside an IP or a status. */
const ANSWER_START = /\r?\n|(?<![\w.-])(?=[245]\d\d[ -])/;

/**
 * The status a text quotes about `recipients`. A code that would say an address is bad (x.1.x,
 * 5.2.1, x.4.4) is believed only from an answer (a line, or one `550-…` piece of a multi-line
 * reply) that names no address or one of theirs; other codes (a policy 5.7.1 refusing our
 * address) are read as statusFromText reads them. A code in an answer naming only someone else
 * (Exim's sender callout quotes "550 5.1.1 <sender@…> User unknown" about OUR address) says
 * nothing about the recipient.
 */
export function statusAbout(text: string | undefined, recipients: string[]): string | undefined {
  if (!text) return undefined;
  const ours = new Set(recipients.map((a) => a.toLowerCase()));
  const namesOnlyOthers = (piece: string) => {
    const named = (piece.match(ADDRESS_IN_TEXT) ?? []).map((a) => a.toLowerCase());
    return named.length > 0 && !named.some((a) => ours.has(a));
  };
  const anywhere = statusFromText(text);
  if (!anywhere || !saysAddressIsBad(anywhere)) return anywhere;
  return statusFromText(
    text
      .split(ANSWER_START)
      .filter((answer) => !namesOnlyOthers(answer))
      .join('\n'),
  );
}

/** A code that, believed, would make the address hard (x.1.x but 5.1.7/5.1.8, 5.2.1, x.4.4). */
const saysAddressIsBad = (status: string) => ADDRESS_REASONS.has(reasonFromStatus(status)?.reason ?? 'other');

/**
 * A reason from the status code's subject/detail (RFC 3463) when it says something
 * specific; `weak` for the generic ones (x.0.0, x.1.0, x.4.x) that the prose may refine.
 */
function reasonFromStatus(status: string): { reason: BounceReason; weak: boolean } | undefined {
  const [, subject, detail] = status.split('.').map(Number) as [number, number, number];
  const strong = (reason: BounceReason) => ({ reason, weak: false });
  if (subject === 1) {
    if (detail === 2) return strong('bad_domain');
    // 5.1.7 / 5.1.8: the SENDER's address was refused — nothing wrong with the recipient.
    if (detail === 7 || detail === 8) return strong('policy');
    if (detail === 0) return { reason: 'unknown_user', weak: true };
    return strong('unknown_user');
  }
  if (subject === 2) return detail === 1 ? strong('mailbox_disabled') : detail === 2 ? strong('mailbox_full') : detail === 3 ? strong('message_too_large') : undefined;
  if (subject === 3) return detail === 4 ? strong('message_too_large') : undefined;
  if (subject === 4) return detail === 4 ? strong('bad_domain') : { reason: 'network', weak: true };
  if (subject === 7) return strong('policy');
  return undefined;
}

export function reasonOf(status: string | undefined, diagnostic: string | undefined): BounceReason {
  // Before the code too: a report's 5.1.1 copied from a callout's answer is about our address.
  if (diagnostic && SENDER_SIDE.test(diagnostic)) return 'policy';
  const fromStatus = status ? reasonFromStatus(status) : undefined;
  if (fromStatus && !fromStatus.weak) return fromStatus.reason;
  for (const [reason, pattern] of PROSE) if (diagnostic && pattern.test(diagnostic)) return reason;
  return fromStatus?.reason ?? 'other';
}

export function classOf(action: 'failed' | 'delayed', status: string | undefined, reason: BounceReason): BounceClass {
  if (action === 'delayed') return 'delay';
  if (status && !status.startsWith('5')) return 'soft';
  return ADDRESS_REASONS.has(reason) ? 'hard' : 'soft';
}

/** Prose-only statuses for notices that name the reason in words but quote no code. */
function statusFromReason(reason: BounceReason, permanent: boolean): string | undefined {
  const first = permanent ? '5' : '4';
  if (reason === 'unknown_user') return `${first}.1.1`;
  if (reason === 'mailbox_full') return `${first}.2.2`;
  if (reason === 'mailbox_disabled') return `${first}.2.1`;
  return undefined;
}

const MAX_DIAGNOSTIC = 300;

export function tidyDiagnostic(text: string | undefined): string | undefined {
  // Control characters too (a NUL cannot be stored in the event's JSON).
  const tidy = text?.replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim();
  if (!tidy) return undefined;
  return tidy.length > MAX_DIAGNOSTIC ? `${tidy.slice(0, MAX_DIAGNOSTIC - 1)}…` : tidy;
}

/**
 * Status, reason and class of one recipient. A report's generic status (`5.0.0`) gives way
 * to a specific one quoted in its diagnostic about this recipient (statusAbout); with no code
 * at all, a bare SMTP reply code (550 → 5.0.0) or the prose ("mailbox full" → x.2.2) stands in.
 */
export function finishRecipient(raw: RawRecipient, noticeText?: string): FailedRecipient {
  const diagnostic = tidyDiagnostic(raw.diagnostic);
  let status = raw.status;
  const recipients = [raw.address, ...(raw.originalRecipient ? [raw.originalRecipient] : [])];
  const quoted = statusAbout(raw.diagnostic, recipients) ?? (raw.status ? undefined : statusAbout(noticeText, recipients));
  if (!status || (/\.0\.0$/.test(status) && quoted && quoted[0] === status[0])) status = quoted ?? status;
  const reason = reasonOf(status, raw.diagnostic ?? noticeText);
  if (!status) {
    const code = REPLY_CODE.exec(raw.diagnostic ?? '') ?? REPLY_CODE.exec(noticeText ?? '');
    const permanent = code ? code[1] === '5' : raw.action === 'failed';
    status = statusFromReason(reason, permanent) ?? (code ? `${code[1]}.0.0` : undefined);
  }
  return {
    address: raw.address,
    ...(raw.originalRecipient ? { originalRecipient: raw.originalRecipient } : {}),
    action: raw.action,
    ...(status ? { status } : {}),
    ...(diagnostic ? { diagnostic } : {}),
    class: classOf(raw.action, status, reason),
    reason,
  };
}
