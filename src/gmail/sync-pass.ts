import type { Config } from '../config.js';
import { DAY_MS } from '../time.js';
import type { Logger } from '../logger.js';
import type { GmailMessageMetadata, MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import { isUnstorableValue, sqlStateOf } from '../db/pg-errors.js';
import { eachLimited } from './sync-support.js';
import type { MailboxRow } from './mailboxes.repo.js';
import type { SyncGap } from '../db/schema.js';
import { addHealth, emptyHealth, type SyncHealthCounts } from './sync-health.js';
import type { SyncRepo } from './sync.repo.js';
import { SKIPPED_LABELS, type createMessageSync, type MessageResult } from './sync-message.js';

/*
 * One sync pass of a mailbox (see README.md "Sync"): which Gmail ids to read — the newest mail
 * (full), history from the stored id (incremental), or everything since the last sync (resync) —
 * handed to the per-message step (sync-message.ts). sync.service.ts decides when passes run.
 */

/** What a mailbox's first sync reads: the newest messages of the last 90 days, at most 500 of them. */
export const FULL_SYNC_QUERY = 'newer_than:90d';
export const FULL_SYNC_MAX_MESSAGES = 500;
/** How far back FULL_SYNC_QUERY reaches: an address connected again is read from its earlier connection's last sync only within it. */
const FIRST_SYNC_REACH_MS = 90 * DAY_MS;
/**
 * A resync (the stored history id is lost: too old for Gmail, or too many changes) reads every
 * message since the last successful sync, a day earlier for clocks, up to GMAIL_RESYNC_MAX_MESSAGES;
 * beyond it the oldest are not read and the mailbox's sync says so (`lastError`, health `resyncGaps`).
 * It records how far it got (after each BATCH): a resync that fails part way is not read
 * from the start again, so one too large to finish between two failures still finishes.
 */
const RESYNC_MARGIN_SECONDS = 24 * 3600;
/**
 * More changes than this since the last sync: a resync (everything since the last sync, newest
 * first) instead of following history page by page. Both read about the same messages; the
 * resync's listing is one query, and it is bounded (GMAIL_RESYNC_MAX_MESSAGES) where history is not.
 */
export const MAX_INCREMENTAL_CHANGES = 2_000;
/** Metadata fetches in flight per mailbox; the pacer still meters every one of them. */
const FETCH_CONCURRENCY = 4;
/**
 * Messages are read in batches of this many (received mail about other mail last in each), and a
 * resync records how far it got after each (one row update).
 */
const BATCH = 200;
const LIST_PAGE_SIZE = 100;

export type SyncMode = 'full' | 'incremental';

export interface PassTotals {
  examined: number;
  kept: number;
  events: number;
  health: SyncHealthCounts;
  /**
   * A resumed resync's counts of what earlier tries read and did not keep, up to the checkpoint
   * it went on from (never read again): added with this pass's own when it succeeds.
   */
  inherited?: SyncHealthCounts;
}

export interface PassResult extends PassTotals {
  mode: SyncMode;
  resynced: boolean;
  historyId?: string;
  /** A resync's gap: kept as the mailbox's `lastError` until the next pass, and as its `lastSyncGap` until a later gap replaces it. */
  gap?: SyncGap;
}

/** A resync's progress for its checkpoint: the last message of a batch read, and the counts of the batch's messages not kept. */
type Progress = (throughId: string, counts: SyncHealthCounts) => Promise<void>;
/**
 * Called before each batch and before a checkpoint: throws (sync-leases.ts SyncLeaseLost) when
 * another process took the mailbox's sync lease, so the pass stops there.
 */
export type LeaseCheck = () => Promise<void>;
const noLease: LeaseCheck = async () => undefined;

export interface SyncPassDeps {
  repo: SyncRepo;
  messageSync: ReturnType<typeof createMessageSync>;
  config: Pick<Config, 'gmail'>;
  logger: Logger;
  now: () => Date;
}

export function createSyncPass(deps: SyncPassDeps) {
  const { repo, messageSync, logger, now } = deps;

  /**
   * One message; one holding text the database cannot store whatever the retry (isUnstorableValue:
   * a stranger's crafted header no cleaning foresaw) is skipped and counted (`unstorable`), its
   * transaction rolled back; any other failure still fails the pass. Failing
   * the pass for it would fail every pass after it at the same message: the history id would
   * never move again, and no reply or bounce after it would ever be read.
   */
  async function processOrSkip(mailbox: MailboxRow, api: MailboxGmail, gmailId: string, options: Parameters<typeof messageSync.processMessage>[3] = {}) {
    try {
      return await messageSync.processMessage(mailbox, api, gmailId, options);
    } catch (error) {
      if (!isUnstorableValue(error)) throw error;
      logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId, sqlState: sqlStateOf(error) }, 'a message holds text the database cannot store; skipped, counted as unstorable');
      return { read: 1, unstorable: 1 };
    }
  }

  /**
   * The messages in batches of BATCH, oldest first, FETCH_CONCURRENCY at a time; in each batch,
   * received mail about other mail (notices, replies) after the rest, so that mail written in
   * Gmail is stored before its bounce is matched to it (sync-message.ts `later`).
   * `stored`: the counts of the messages this pass stored (kept), added as they are. A pass that
   * fails after storing some adds those (runSync): its retry skips what is stored already, so
   * it would never count them; what was read and not stored is read, and counted, again — but a
   * resync's checkpoint (`progress`, after each batch: its last id, and the counts of its
   * messages not stored) keeps them, as the next try never reads that batch again.
   */
  async function processIds(mailbox: MailboxRow, api: MailboxGmail, gmailIds: string[], stored: SyncHealthCounts, held: LeaseCheck, progress?: Progress): Promise<PassTotals> {
    const health = emptyHealth();
    const unique = [...new Set(gmailIds)];
    const todo: string[] = [];
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      const known = await repo.knownGmailIds(mailbox.id, chunk);
      todo.push(...chunk.filter((id) => !known.has(id)));
    }
    for (let start = 0; start < todo.length; start += BATCH) {
      await held();
      const batch = todo.slice(start, start + BATCH);
      const notKept = emptyHealth();
      const count = (result: MessageResult) => {
        addHealth(health, result);
        addHealth(result.kept ? stored : notKept, result);
      };
      const later: { id: string; meta: GmailMessageMetadata }[] = [];
      await eachLimited(batch, FETCH_CONCURRENCY, async (id) => {
        const result = await processOrSkip(mailbox, api, id, { later: true });
        if ('deferred' in result) later.push({ id, meta: result.deferred });
        else count(result);
      });
      await eachLimited(later, FETCH_CONCURRENCY, async ({ id, meta }) => {
        count((await processOrSkip(mailbox, api, id, { meta })) as MessageResult);
      });
      if (progress) {
        await held();
        await progress(batch.at(-1)!, notKept);
      }
    }
    return { examined: health.read, kept: health.kept, events: health.reply + health.autoReply + health.bounce + health.delay, health };
  }

  /** Added message ids since `startHistoryId` (or taken out of Spam or Trash), or undefined when there are too many to catch up on. */
  async function listChanges(api: MailboxGmail, startHistoryId: string) {
    const ids: string[] = [];
    let historyId = startHistoryId;
    let pageToken: string | undefined;
    do {
      const page = await api.listAddedSince(startHistoryId, pageToken);
      for (const added of page.addedMessages) if (!added.labelIds.some((l) => SKIPPED_LABELS.has(l))) ids.push(added.id);
      historyId = page.historyId;
      pageToken = page.nextPageToken;
      if (ids.length > MAX_INCREMENTAL_CHANGES) return undefined;
    } while (pageToken);
    // A message can come twice (added, then taken out of Spam): read once.
    return { ids: [...new Set(ids)], historyId };
  }

  /** listChanges, or undefined when Gmail no longer has history that old (404). */
  async function changesSince(api: MailboxGmail, startHistoryId: string) {
    try {
      return await listChanges(api, startHistoryId);
    } catch (error) {
      if (error instanceof GmailError && error.kind === 'not_found') return undefined;
      throw error;
    }
  }

  /**
   * Where a resync of this window (`since`) goes on, from an earlier try's checkpoint: after its
   * message in the listing (`ordered`, oldest first), and first the mail that try could not have
   * listed — added since it began, or taken out of Spam or Trash since (a reply marked "Not
   * spam" between two tries sits before the checkpoint: a reviewer's finding), read from history
   * since that try's start. From the start when there is no checkpoint of this window, its
   * message left the listing, or that history is gone or too long.
   */
  async function resumePoint(mailbox: MailboxRow, api: MailboxGmail, ordered: string[], since: number) {
    const fromTheStart = { at: 0, first: [] as string[], counts: emptyHealth() };
    const checkpoint = mailbox.resyncCheckpoint;
    if (!checkpoint?.historyId || checkpoint.since !== since) return fromTheStart;
    const at = ordered.indexOf(checkpoint.throughId) + 1;
    const changed = at > 0 ? await changesSince(api, checkpoint.historyId) : undefined;
    if (!changed) return fromTheStart;
    logger.info({ mailboxId: mailbox.id, alreadyRead: at, left: ordered.length - at, changedSince: changed.ids.length }, 'resuming an interrupted resync');
    const rest = new Set(ordered.slice(at));
    // What the listing holds after the checkpoint is read there, in its order: only what sits
    // before it comes first (else a checkpoint written while reading these would name a message
    // near the end of the listing, and the next try skip everything before it: a reviewer's finding).
    const counts = emptyHealth();
    addHealth(counts, checkpoint.counts ?? {});
    return { at, first: changed.ids.filter((id) => !rest.has(id)), counts };
  }

  /**
   * A first sync reads the newest mail (FULL_SYNC_QUERY); a resync everything since the last
   * successful one (GMAIL_RESYNC_MAX_MESSAGES), so that losing the history id loses no reply or
   * bounce. `from`: where a resync starts (the mailbox's last good sync), or where the first sync
   * of an address connected again starts (its earlier connection's last good sync, at most
   * FULL_SYNC_QUERY's 90 days back): read as a resync, its gap shown when there is more.
   */
  async function fullSync(mailbox: MailboxRow, api: MailboxGmail, resynced: boolean, stored: SyncHealthCounts, held: LeaseCheck, from?: Date | null): Promise<PassResult> {
    const since = from ? Math.floor(from.getTime() / 1000) - RESYNC_MARGIN_SECONDS : undefined;
    const [query, max] = since === undefined ? [FULL_SYNC_QUERY, FULL_SYNC_MAX_MESSAGES] : [`after:${since}`, deps.config.gmail.resyncMaxMessages];
    // The history id from before listing: anything that arrives while we list is picked up next time.
    const profile = await api.getProfile();
    const ids: string[] = [];
    let pageToken: string | undefined;
    do {
      // Trash too, not Spam: a reply deleted before this pass was still answered (history, which
      // an incremental pass reads, has it as added; a listing leaves Trash out unless asked).
      const page = await api.listMessageIds({ query: `${query} -in:spam`, includeSpamTrash: true, maxResults: Math.min(LIST_PAGE_SIZE, max - ids.length), pageToken });
      ids.push(...page.ids);
      pageToken = page.nextPageToken;
    } while (pageToken && ids.length < max);
    // Oldest first, as history would have delivered them: an original tends to be stored before its replies.
    const ordered = ids.slice(0, max).reverse();
    let totals: PassTotals;
    if (since === undefined) {
      totals = await processIds(mailbox, api, ordered, stored, held);
    } else {
      const resume = await resumePoint(mailbox, api, ordered, since);
      const rest = ordered.slice(resume.at);
      const listed = new Set(rest);
      // The counts a checkpoint keeps: what every try read up to it and did not keep.
      const counted = emptyHealth();
      addHealth(counted, resume.counts);
      const progress: Progress = async (throughId, counts) => {
        addHealth(counted, counts);
        // A checkpoint names a message of the listing only, once what came first was all read.
        if (!listed.has(throughId) || !profile.historyId) return;
        try {
          await repo.recordResyncCheckpoint(mailbox.id, { since, throughId, historyId: profile.historyId, at: now().toISOString(), counts: counted });
        } catch (error) {
          // Bookkeeping: the pass goes on (a later failure then reads more again).
          logger.warn({ mailboxId: mailbox.id, sqlState: sqlStateOf(error) }, 'a resync checkpoint could not be recorded');
        }
      };
      totals = { ...(await processIds(mailbox, api, [...resume.first, ...rest], stored, held, progress)), inherited: resume.counts };
    }
    const gap = since !== undefined && pageToken !== undefined ? { at: now().toISOString(), since: new Date(since * 1000).toISOString(), read: max } : undefined;
    if (gap) {
      totals.health.resyncGaps += 1;
      logger.warn({ mailboxId: mailbox.id, read: max }, 'more mail since the last sync than a resync reads; the oldest was not read');
    }
    return { mode: 'full', resynced, historyId: profile.historyId || undefined, ...totals, ...(gap ? { gap } : {}) };
  }

  async function syncPass(mailbox: MailboxRow, api: MailboxGmail, stored: SyncHealthCounts, held: LeaseCheck = noLease): Promise<PassResult> {
    if (!mailbox.historyId) {
      // Disconnected and connected again: what arrived since the earlier connection last read it
      // (a reply, a bounce) is read, not only the newest 500 — and if there is more, the gap shows.
      const earlier = await repo.lastSyncOfEarlierConnections(mailbox.id);
      const from = earlier && earlier.getTime() > now().getTime() - FIRST_SYNC_REACH_MS ? earlier : undefined;
      return fullSync(mailbox, api, false, stored, held, from);
    }
    let changes: Awaited<ReturnType<typeof listChanges>>;
    try {
      changes = await listChanges(api, mailbox.historyId);
    } catch (error) {
      if (!(error instanceof GmailError) || error.kind !== 'not_found') throw error;
      // Gmail keeps history for about a week; an older start id is a 404 and means "sync everything again".
      logger.info({ mailboxId: mailbox.id }, 'stored history id is too old for Gmail; doing a full resync');
      return fullSync(mailbox, api, true, stored, held, mailbox.lastSyncAt);
    }
    if (!changes) {
      logger.info({ mailboxId: mailbox.id, limit: MAX_INCREMENTAL_CHANGES }, 'too many changes since the last sync; doing a full resync');
      return fullSync(mailbox, api, true, stored, held, mailbox.lastSyncAt);
    }
    const totals = await processIds(mailbox, api, changes.ids, stored, held);
    return { mode: 'incremental', resynced: false, historyId: changes.historyId, ...totals };
  }

  return { syncPass };
}
