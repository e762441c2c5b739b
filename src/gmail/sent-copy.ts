import type { Logger } from '../logger.js';
import { GMAIL_SCOPES, type MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxRow } from './mailboxes.repo.js';
import { parseMessageIds } from './mail-events.js';

export interface GmailIds {
  id: string;
  threadId: string;
}

/** The last look reads at most this many of the newest sent messages we do not hold, and lists at most this many pages; past either it cannot tell. */
export const SENT_SCAN_MAX_MESSAGES = 300;
const SENT_SCAN_MAX_PAGES = 10;
const SENT_SCAN_PAGE = 100;
/** Gmail's internalDate is when Gmail stored the message, a moment after the claim: a margin for clocks. */
const SCAN_MARGIN_MS = 10 * 60_000;
/**
 * A message we hold is dated by our row: a 1:1 send's row by its claim, which may come minutes
 * before Gmail stored it (retries). Taken as stored up to an hour after that date, so that it
 * never ends a walk early.
 */
const HELD_SLACK_MS = 60 * 60_000;
/** The last look could not read far enough back to tell (see `find`): at most once wins, as for a mailbox that cannot be read. */
export const UNDECIDED = 'undecided' as const;

export interface SentCopyDeps {
  withGmail: <T>(mailbox: MailboxRow, work: (api: MailboxGmail) => Promise<T>) => Promise<T>;
  /** The Gmail ids sync recorded on a send of ours it met among the mailbox's sent mail (sync.repo.ts `seenSend`). */
  seenBySync: (messageRowId: string) => Promise<GmailIds | undefined>;
  /** When the send's message row was written: its claim. */
  claimedAt: (messageRowId: string) => Promise<Date | undefined>;
  /** Which of these Gmail ids we hold already for the mailbox, with their times (sync.repo.ts `heldGmailIds`): our recorded sends and synced mail. */
  heldGmailIds: (mailboxId: string, gmailIds: string[]) => Promise<Map<string, Date>>;
  /** Asks for a sync pass of the mailbox in the background (sync.service.ts `syncInBackground`). */
  requestSync: (mailboxId: string) => void;
  logger: Logger;
  now?: () => Date;
}

/** One recovery pass's walk down a mailbox's sent mail, newest first: resumed, never started over, for an older claim. */
interface SentWalk {
  round: number;
  /** Message-ID → Gmail ids of what was read. */
  found: Map<string, GmailIds>;
  /** The oldest storage time walked past (held messages at their latest). */
  reachedBack: number;
  /** The rest of the page being walked, what of it we hold, and the next page. */
  buffer: string[];
  held: Map<string, Date>;
  nextPageToken: string | undefined;
  end: boolean;
  pages: number;
  reads: number;
  /** Walks of one mailbox run one after another. */
  queue: Promise<unknown>;
}

/**
 * Did Gmail store a send of ours whose answer we never had (a timeout, a crash)? Invariant 3:
 * found means sent, never sent again. Asked by recovery, campaign and 1:1 alike, once per look.
 *
 * 1. The search `rfc822msgid:<ours>` among sent mail. It reads Gmail's search index, which can
 *    lag behind what Gmail stores: a message stored but not yet indexed is "not found". A copy
 *    delivered into the inbox (mail to oneself, or sent back in by anyone who got it) is not
 *    proof that this mailbox sent it.
 * 2. What sync saw. Sync reads the mailbox's history, Gmail's own record of what it stored, and
 *    records the Gmail ids on a send of ours it meets among the mailbox's sent mail while its
 *    outcome is open. A look that misses asks for a sync pass in the background.
 * 3. On the last look, before "not found" becomes the verdict (a campaign send is then queued
 *    again, a 1:1 send reported not sent): the mailbox's sent mail listed by its label, which
 *    is not a search, newest first, back to the send's claim, skipping what we hold already,
 *    each message's Message-ID read. Sync alone is not enough there: a resync (history expired,
 *    or more changes than a pass reads, which anyone can cause by mailing the mailbox) lists by
 *    search too, and then moves past the copy. The messages we hold give their time from our
 *    rows (taken as up to an hour later: a 1:1 row is dated at its claim). One walk per mailbox
 *    serves all the last looks of one recovery pass (`round`, campaign and 1:1 sends alike),
 *    carried further back for an older claim, never started over; at most 300 messages are
 *    read and 10 pages listed in it.
 *    A walk that cannot reach back to the claim cannot tell, and the send's outcome stays
 *    unknown (UNDECIDED: failed, outcome_unknown, never sent again), as for a mailbox that
 *    cannot be read. We take the label listing to be newest first and not to lag as search
 *    does; Google documents neither, and the sandbox models it so. The verdicts give way to a
 *    record sync writes at that very moment (send-ledger-recovery.repo.ts `requeueUnsent`,
 *    messages.service.ts). What Gmail stores later still is beyond anything we can ask.
 */
export function createSentCopies(deps: SentCopyDeps) {
  const now = deps.now ?? (() => new Date());
  /** Each mailbox's walk of the current recovery pass (one entry per mailbox, replaced by the next pass's). */
  const walks = new Map<string, SentWalk>();

  function walkOf(mailboxId: string, round: Date): SentWalk {
    const existing = walks.get(mailboxId);
    if (existing?.round === round.getTime()) return existing;
    const walk: SentWalk = { round: round.getTime(), found: new Map(), reachedBack: Number.POSITIVE_INFINITY, buffer: [], held: new Map(), nextPageToken: undefined, end: false, pages: 0, reads: 0, queue: Promise.resolve() };
    walks.set(mailboxId, walk);
    return walk;
  }

  /** Walks on until past `back`: true when it got there (or to the end), false at the caps. */
  async function walkBack(mailbox: MailboxRow, walk: SentWalk, back: number): Promise<boolean> {
    for (;;) {
      if (walk.reachedBack < back) return true;
      if (walk.buffer.length === 0) {
        if (walk.end) return true;
        if (walk.pages >= SENT_SCAN_MAX_PAGES) return false;
        // Trash too: a copy the person deleted was sent all the same.
        const page = await deps.withGmail(mailbox, (gmail) => gmail.listMessageIds({ labelIds: ['SENT'], includeSpamTrash: true, maxResults: SENT_SCAN_PAGE, pageToken: walk.nextPageToken }));
        walk.held = await deps.heldGmailIds(mailbox.id, page.ids);
        walk.buffer = [...page.ids];
        walk.nextPageToken = page.nextPageToken;
        walk.end = !page.nextPageToken;
        walk.pages += 1;
        continue;
      }
      const id = walk.buffer[0]!;
      const heldAt = walk.held.get(id);
      let stored = heldAt ? heldAt.getTime() + HELD_SLACK_MS : undefined;
      if (!heldAt) {
        if (walk.reads >= SENT_SCAN_MAX_MESSAGES) return false;
        const meta = await deps.withGmail(mailbox, (gmail) => gmail.getMetadata(id, ['Message-ID'])).catch((error: unknown) => {
          // Deleted for good between the listing and the read: nothing to find in it.
          if (error instanceof GmailError && error.kind === 'not_found') return undefined;
          throw error;
        });
        walk.reads += 1;
        const messageId = meta && parseMessageIds(meta.headers['message-id'])[0];
        if (meta && messageId && !walk.found.has(messageId)) walk.found.set(messageId, { id: meta.id || id, threadId: meta.threadId });
        stored = meta?.internalDate?.getTime();
      }
      walk.buffer.shift();
      if (stored !== undefined) walk.reachedBack = Math.min(walk.reachedBack, stored);
    }
  }

  /** This recovery pass's walk of the mailbox's sent mail, carried on to `back`: true when it got there. */
  async function sentSince(mailbox: MailboxRow, back: number, round: Date): Promise<{ walk: SentWalk; complete: boolean }> {
    const walk = walkOf(mailbox.id, round);
    const run = walk.queue.then(() => walkBack(mailbox, walk, back));
    walk.queue = run.catch(() => undefined);
    return { walk, complete: await run };
  }

  /**
   * `lastLook`: the time the recovery pass making it began, or undefined for an earlier look.
   * UNDECIDED only from a last look whose listing could not reach back to the claim.
   */
  async function find(
    mailbox: MailboxRow,
    send: { rfc822MessageId: string; messageRowId: string | null },
    lastLook: { round: Date } | undefined,
  ): Promise<GmailIds | typeof UNDECIDED | undefined> {
    const searched = await deps.withGmail(mailbox, (gmail) => gmail.findByRfc822MessageId(send.rfc822MessageId));
    if (searched.length > 0) return searched[0];
    if (!send.messageRowId) return undefined;
    const seen = await deps.seenBySync(send.messageRowId);
    if (seen) return seen;
    const readable = mailbox.scopes.includes(GMAIL_SCOPES.readonly);
    if (!readable) return undefined;
    if (!lastLook) {
      if (mailbox.syncEnabled) deps.requestSync(mailbox.id);
      return undefined;
    }
    const claimedAt = (await deps.claimedAt(send.messageRowId)) ?? now();
    const scan = await sentSince(mailbox, claimedAt.getTime() - SCAN_MARGIN_MS, lastLook.round);
    const listed = scan.walk.found.get(send.rfc822MessageId) ?? (await deps.seenBySync(send.messageRowId));
    if (listed) return listed;
    if (scan.complete) return undefined;
    deps.logger.warn({ mailboxId: mailbox.id }, 'more sent mail since a send of unknown outcome than the last look reads: its outcome stays unknown');
    return UNDECIDED;
  }

  return { find, seenBySync: deps.seenBySync };
}

export type SentCopies = ReturnType<typeof createSentCopies>;
