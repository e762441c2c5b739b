import { normalizeMessageId, type MailSummary, type ParsedAddress } from './mime.js';

/** The slice of a stored message the Gmail search language looks at. */
export interface Searchable {
  labelIds: readonly string[];
  internalDate: number;
  summary: MailSummary;
}

export interface CompiledQuery {
  matches(message: Searchable): boolean;
  /** `in:anywhere`, `in:spam`, `in:trash` lift Gmail's default exclusion of SPAM/TRASH. */
  includesSpamTrash: boolean;
}

type Predicate = (message: Searchable) => boolean;

/** Splits on whitespace, keeping "quoted phrases" and `op:"quoted value"` together. */
function tokenize(q: string): string[] {
  const tokens: string[] = [];
  const pattern = /-?[^\s"]*"[^"]*"?|\S+/g;
  for (let m = pattern.exec(q); m; m = pattern.exec(q)) tokens.push(m[0]);
  return tokens;
}

function unquote(value: string): string {
  return value.replace(/^"|"$/g, '');
}

function addressMatches(addresses: readonly ParsedAddress[], needle: string): boolean {
  const n = needle.toLowerCase();
  if (n === 'me') return false;
  return addresses.some((a) => a.address.includes(n) || a.name.toLowerCase().includes(n));
}

/** `2024/01/31`, `2024-01-31`, `01/31/2024` or epoch seconds, as Gmail accepts for after:/before:. */
function parseDate(value: string): number | undefined {
  if (/^\d{9,}$/.test(value)) return Number(value) * 1000;
  const ymd = /^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$/.exec(value);
  if (ymd) return Date.UTC(Number(ymd[1]), Number(ymd[2]) - 1, Number(ymd[3]));
  const mdy = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(value);
  if (mdy) return Date.UTC(Number(mdy[3]), Number(mdy[1]) - 1, Number(mdy[2]));
  return undefined;
}

const UNIT_MS: Record<string, number> = { h: 3600_000, d: 86_400_000, m: 30 * 86_400_000, y: 365 * 86_400_000 };

function parseAge(value: string): number | undefined {
  const match = /^(\d+)([hdmy])$/i.exec(value);
  return match ? Number(match[1]) * UNIT_MS[match[2]!.toLowerCase()]! : undefined;
}

const IN_LABELS: Record<string, string> = {
  inbox: 'INBOX',
  sent: 'SENT',
  spam: 'SPAM',
  trash: 'TRASH',
  draft: 'DRAFT',
  drafts: 'DRAFT',
  starred: 'STARRED',
  important: 'IMPORTANT',
  chats: 'CHAT',
};

const IS_LABELS: Record<string, [string, boolean]> = {
  unread: ['UNREAD', true],
  read: ['UNREAD', false],
  starred: ['STARRED', true],
  important: ['IMPORTANT', true],
};

function textMatches(message: Searchable, needle: string): boolean {
  const n = needle.toLowerCase();
  const s = message.summary;
  return [s.subject, s.text, s.html ?? '', ...[...s.from, ...s.to, ...s.cc].flatMap((a) => [a.address, a.name])].some((field) =>
    field.toLowerCase().includes(n),
  );
}

function termPredicate(term: string, now: Date): { predicate: Predicate; spamTrash: boolean } {
  let spamTrash = false;
  const colon = term.indexOf(':');
  const operator = colon > 0 ? term.slice(0, colon).toLowerCase() : '';
  const value = colon > 0 ? unquote(term.slice(colon + 1)) : unquote(term);
  const lower = value.toLowerCase();
  let predicate: Predicate;
  switch (operator) {
    case 'rfc822msgid': {
      const wanted = normalizeMessageId(value);
      predicate = (m) => m.summary.messageId !== undefined && normalizeMessageId(m.summary.messageId) === wanted;
      break;
    }
    case 'from':
      predicate = (m) => addressMatches(m.summary.from, value) || (lower === 'me' && m.labelIds.includes('SENT'));
      break;
    case 'to':
      predicate = (m) => addressMatches([...m.summary.to, ...m.summary.cc, ...m.summary.bcc], value);
      break;
    case 'cc':
      predicate = (m) => addressMatches(m.summary.cc, value);
      break;
    case 'bcc':
      predicate = (m) => addressMatches(m.summary.bcc, value);
      break;
    case 'subject':
      predicate = (m) => m.summary.subject.toLowerCase().includes(lower);
      break;
    case 'after':
    case 'before': {
      const at = parseDate(value);
      if (at === undefined) throw new RangeError(`Invalid date in ${term}`);
      predicate = operator === 'after' ? (m) => m.internalDate >= at : (m) => m.internalDate < at;
      break;
    }
    case 'newer_than':
    case 'older_than': {
      const age = parseAge(value);
      if (age === undefined) throw new RangeError(`Invalid age in ${term}`);
      const cutoff = now.getTime() - age;
      predicate = operator === 'newer_than' ? (m) => m.internalDate >= cutoff : (m) => m.internalDate < cutoff;
      break;
    }
    case 'in': {
      if (lower === 'anywhere') {
        spamTrash = true;
        predicate = () => true;
        break;
      }
      const label = IN_LABELS[lower] ?? value.toUpperCase();
      if (label === 'SPAM' || label === 'TRASH') spamTrash = true;
      predicate = (m) => m.labelIds.includes(label);
      break;
    }
    case 'label': {
      const label = IN_LABELS[lower] ?? value.toUpperCase().replace(/-/g, '_');
      if (label === 'SPAM' || label === 'TRASH') spamTrash = true;
      predicate = (m) => m.labelIds.includes(label);
      break;
    }
    case 'is': {
      const known = IS_LABELS[lower];
      if (!known) throw new RangeError(`Unsupported is:${value}`);
      const [label, present] = known;
      predicate = (m) => m.labelIds.includes(label) === present;
      break;
    }
    case 'has':
      if (lower !== 'attachment') throw new RangeError(`Unsupported has:${value}`);
      predicate = (m) => m.summary.hasAttachments;
      break;
    case 'category': {
      const label = `CATEGORY_${value.toUpperCase()}`;
      predicate = (m) => m.labelIds.includes(label);
      break;
    }
    default:
      // Not an operator we know: Gmail would search for the literal text, and so do we.
      predicate = (m) => textMatches(m, colon > 0 ? term : value);
  }
  return { predicate, spamTrash };
}

/**
 * A subset of Gmail's search language: terms are ANDed, `OR` between two terms,
 * `-term` negates. Operators: rfc822msgid, from, to, cc, bcc, subject, after,
 * before, newer_than, older_than, in, label, is, has:attachment, category;
 * anything else is a text search over subject, body and addresses.
 * Throws RangeError on a malformed operator value (→ 400).
 */
export function compileQuery(q: string | undefined, now: Date): CompiledQuery {
  const tokens = tokenize(q ?? '');
  const clauses: Predicate[][] = [];
  let spamTrash = false;
  let joinWithPrevious = false;
  for (const token of tokens) {
    if (token === 'OR' || token === '|') {
      joinWithPrevious = clauses.length > 0;
      continue;
    }
    const negated = token.startsWith('-') && token.length > 1;
    const { predicate, spamTrash: st } = termPredicate(negated ? token.slice(1) : token, now);
    spamTrash ||= st && !negated;
    const effective: Predicate = negated ? (m) => !predicate(m) : predicate;
    if (joinWithPrevious) clauses[clauses.length - 1]!.push(effective);
    else clauses.push([effective]);
    joinWithPrevious = false;
  }
  return {
    includesSpamTrash: spamTrash,
    matches: (message) => clauses.every((alternatives) => alternatives.some((p) => p(message))),
  };
}
