import type { Config } from '../config.js';
import { DAY_MS } from '../time.js';
import type { Logger } from '../logger.js';
import { GMAIL_SCOPES, type MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import { isUnstorableValue, sqlStateOf } from '../db/pg-errors.js';
import { describeSyncFailure, eachLimited, safeErrorFields } from './sync-support.js';
import { createWatches } from './watches.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import type { MailboxService } from './mailboxes.service.js';
import type { MailboxPacer } from './pacer.js';
import { createSignals } from './signals.js';
import type { SyncGap } from '../db/schema.js';
import { emptyHealth, type SyncHealthCounts } from './sync-health.js';
import type { SyncLeases } from './sync-leases.js';
import type { GmailGuard } from '../privacy/gmail-guard.js';
import type { SyncRepo } from './sync.repo.js';
import { createMessageSync, SKIPPED_LABELS } from './sync-message.js';

/*
 * Reading mail into the CRM (see README.md "Sync"). A full sync lists the newest mail,
 * an incremental one follows history.list from the stored history id; both hand Gmail ids
 * to the same per-message step (sync-message.ts), which keeps only mail with a CRM contact or
 * about a message we sent, as metadata, and turns replies and bounces into mail_events.
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
 * It records how far it got (RESYNC_CHECKPOINT_EVERY): a resync that fails part way is not read
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
/** A resync records how far it got every this many messages read (one row update each). */
const RESYNC_CHECKPOINT_EVERY = 200;
const LIST_PAGE_SIZE = 100;

export type SyncMode = 'full' | 'incremental';

export type SyncOutcome =
  | { status: 'synced'; mode: SyncMode; examined: number; kept: number; events: number; resynced: boolean }
  | { status: 'failed'; kind: GmailError['kind'] | 'internal' }
  | { status: 'skipped'; reason: 'unknown_mailbox' | 'sync_disabled' | 'needs_reconnect' | 'running_elsewhere' };

export interface SyncServiceDeps {
  repo: SyncRepo;
  mailboxesRepo: MailboxesRepo;
  mailboxes: MailboxService;
  pacer: MailboxPacer;
  config: Pick<Config, 'gmail' | 'signals'>;
  /** Topic users.watch publishes to; undefined → no watches (polling only). */
  pushTopic?: string;
  /** One sync per mailbox across processes; without it, only within this process. */
  leases?: SyncLeases;
  /** The privacy guard: sync reads a notice's content as the service operating the owner's mailbox. */
  guard: Pick<GmailGuard, 'readContent'>;
  logger: Logger;
  now?: () => Date;
}

/** A held sync lease is extended this often (it lasts two minutes). */
const LEASE_RENEW_MS = 30_000;
/** Syncs in a row for one lease when requests keep arriving; the next request starts afresh. */
const MAX_PASSES_PER_LEASE = 3;

interface PassTotals {
  examined: number;
  kept: number;
  events: number;
  health: SyncHealthCounts;
}

interface PassResult extends PassTotals {
  mode: SyncMode;
  resynced: boolean;
  historyId?: string;
  /** A resync's gap: kept as the mailbox's `lastError` until the next pass, and as its `lastSyncGap` until a later gap replaces it. */
  gap?: SyncGap;
}


export function createSyncService(deps: SyncServiceDeps) {
  const { repo, mailboxesRepo, mailboxes, pacer, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const messageSync = createMessageSync({ repo, signals: createSignals(deps.config.signals), guard: deps.guard, logger, now });
  const watches = createWatches({ repo, mailboxes, pushTopic: deps.pushTopic, logger, now });

  /*
   * One sync per mailbox at a time: in this process a request while one runs is queued
   * behind it (once), so a push arriving mid-sync is not lost and never runs in parallel;
   * across processes the mailbox's sync lease (sync-leases.ts) does the same — a request
   * that finds the lease held elsewhere asks the holder for one more pass.
   */
  const inFlight = new Map<string, Promise<SyncOutcome>>();
  const queued = new Map<string, Promise<SyncOutcome>>();
  /** When this process last tried each mailbox (success or not): the poller's spacing. */
  const lastAttempt = new Map<string, number>();

  /**
   * One message; one holding text the database cannot store whatever the retry (isUnstorableValue:
   * a stranger's crafted header no cleaning foresaw) is skipped and counted (`unstorable`), its
   * transaction rolled back; any other failure still fails the pass. Failing
   * the pass for it would fail every pass after it at the same message: the history id would
   * never move again, and no reply or bounce after it would ever be read.
   */
  async function processOrSkip(mailbox: MailboxRow, api: MailboxGmail, gmailId: string) {
    try {
      return await messageSync.processMessage(mailbox, api, gmailId);
    } catch (error) {
      if (!isUnstorableValue(error)) throw error;
      logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId, sqlState: sqlStateOf(error) }, 'a message holds text the database cannot store; skipped, counted as unstorable');
      return { read: 1, unstorable: 1 };
    }
  }

  /**
   * `stored`: the counts of the messages this pass stored (kept), added as they are. A pass that
   * fails after storing some adds those (runSync): its retry skips what is stored already, so
   * it would never count them; what was read and not stored is read, and counted, again.
   */
  async function processIds(
    mailbox: MailboxRow,
    api: MailboxGmail,
    gmailIds: string[],
    stored: SyncHealthCounts,
    /** Told, now and then, the last id of the unbroken run of `gmailIds` read so far (a resync's checkpoint). */
    progress?: (throughId: string) => Promise<void>,
  ): Promise<PassTotals> {
    const health = emptyHealth();
    const unique = [...new Set(gmailIds)];
    const todo: string[] = [];
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      const known = await repo.knownGmailIds(mailbox.id, chunk);
      todo.push(...chunk.filter((id) => !known.has(id)));
    }
    // Read FETCH_CONCURRENCY at a time, so they finish out of order: the run told is unbroken.
    const done = new Array<boolean>(todo.length).fill(false);
    let through = 0;
    let told = 0;
    let telling = Promise.resolve();
    await eachLimited([...todo.keys()], FETCH_CONCURRENCY, async (index) => {
      const result = await processOrSkip(mailbox, api, todo[index]!);
      for (const [key, n] of Object.entries(result) as [keyof SyncHealthCounts, number][]) {
        health[key] += n;
        if (result.kept) stored[key] += n;
      }
      if (!progress) return;
      done[index] = true;
      while (through < todo.length && done[through]) through += 1;
      if (through - told >= RESYNC_CHECKPOINT_EVERY) {
        told = through;
        const throughId = todo[through - 1]!;
        // One after another, so a later checkpoint is never overwritten by an earlier one.
        telling = telling.then(() => progress(throughId));
        await telling;
      }
    });
    return { examined: health.read, kept: health.kept, events: health.reply + health.autoReply + health.bounce + health.delay, health };
  }

  /**
   * A first sync reads the newest mail (FULL_SYNC_QUERY); a resync everything since the last
   * successful one (GMAIL_RESYNC_MAX_MESSAGES), so that losing the history id loses no reply or
   * bounce. `from`: where a resync starts (the mailbox's last good sync), or where the first sync
   * of an address connected again starts (its earlier connection's last good sync, at most
   * FULL_SYNC_QUERY's 90 days back): read as a resync, its gap shown when there is more.
   */
  async function fullSync(mailbox: MailboxRow, api: MailboxGmail, resynced: boolean, stored: SyncHealthCounts, from?: Date | null): Promise<PassResult> {
    const since = from ? Math.floor(from.getTime() / 1000) - RESYNC_MARGIN_SECONDS : undefined;
    const [query, max] = since === undefined ? [FULL_SYNC_QUERY, FULL_SYNC_MAX_MESSAGES] : [`after:${since}`, deps.config.gmail.resyncMaxMessages];
    // The history id from before listing: anything that arrives while we list is picked up next time.
    const profile = await api.getProfile();
    const ids: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = await api.listMessageIds({ query, maxResults: Math.min(LIST_PAGE_SIZE, max - ids.length), pageToken });
      ids.push(...page.ids);
      pageToken = page.nextPageToken;
    } while (pageToken && ids.length < max);
    // Oldest first, as history would have delivered them: an original tends to be stored before its replies.
    const ordered = ids.slice(0, max).reverse();
    // An earlier try of this same resync (the same window) read this far before it failed or its
    // process died: it goes on after that (what arrived since lists at the end), not from the start.
    const checkpoint = mailbox.resyncCheckpoint;
    const resumeAt = since !== undefined && checkpoint?.since === since ? ordered.indexOf(checkpoint.throughId) + 1 : 0;
    if (resumeAt > 0) logger.info({ mailboxId: mailbox.id, alreadyRead: resumeAt, left: ordered.length - resumeAt }, 'resuming an interrupted resync');
    const progress =
      since === undefined ? undefined : (throughId: string) => repo.recordResyncCheckpoint(mailbox.id, { since, throughId, at: now().toISOString() });
    const totals = await processIds(mailbox, api, ordered.slice(resumeAt), stored, progress);
    const gap = since !== undefined && pageToken !== undefined ? { at: now().toISOString(), since: new Date(since * 1000).toISOString(), read: max } : undefined;
    if (gap) {
      totals.health.resyncGaps += 1;
      logger.warn({ mailboxId: mailbox.id, read: max }, 'more mail since the last sync than a resync reads; the oldest was not read');
    }
    return { mode: 'full', resynced, historyId: profile.historyId || undefined, ...totals, ...(gap ? { gap } : {}) };
  }

  /** Added message ids since `startHistoryId`, or undefined when there are too many to catch up on. */
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

  async function syncPass(mailbox: MailboxRow, api: MailboxGmail, stored: SyncHealthCounts): Promise<PassResult> {
    if (!mailbox.historyId) {
      // Disconnected and connected again: what arrived since the earlier connection last read it
      // (a reply, a bounce) is read, not only the newest 500 — and if there is more, the gap shows.
      const earlier = await repo.lastSyncOfEarlierConnections(mailbox.id);
      const from = earlier && earlier.getTime() > now().getTime() - FIRST_SYNC_REACH_MS ? earlier : undefined;
      return fullSync(mailbox, api, false, stored, from);
    }
    let changes: Awaited<ReturnType<typeof listChanges>>;
    try {
      changes = await listChanges(api, mailbox.historyId);
    } catch (error) {
      if (!(error instanceof GmailError) || error.kind !== 'not_found') throw error;
      // Gmail keeps history for about a week; an older start id is a 404 and means "sync everything again".
      logger.info({ mailboxId: mailbox.id }, 'stored history id is too old for Gmail; doing a full resync');
      return fullSync(mailbox, api, true, stored, mailbox.lastSyncAt);
    }
    if (!changes) {
      logger.info({ mailboxId: mailbox.id, limit: MAX_INCREMENTAL_CHANGES }, 'too many changes since the last sync; doing a full resync');
      return fullSync(mailbox, api, true, stored, mailbox.lastSyncAt);
    }
    const totals = await processIds(mailbox, api, changes.ids, stored);
    return { mode: 'incremental', resynced: false, historyId: changes.historyId, ...totals };
  }

  async function runSync(mailboxId: string): Promise<SyncOutcome> {
    const mailbox = await mailboxesRepo.findByIdUnscoped(mailboxId);
    if (!mailbox) return { status: 'skipped', reason: 'unknown_mailbox' };
    if (!mailbox.syncEnabled || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return { status: 'skipped', reason: 'sync_disabled' };
    if (mailbox.status !== 'active') return { status: 'skipped', reason: 'needs_reconnect' };
    lastAttempt.set(mailbox.id, now().getTime());
    const stored = emptyHealth();
    try {
      // withGmail marks the mailbox needs_reconnect when Google says the grant is gone.
      const result = await mailboxes.withGmail(mailbox, (api) => syncPass(mailbox, api, stored));
      // History advances only here, after every message up to it was processed.
      await repo.recordSyncSuccess(mailbox.id, { historyId: result.historyId, seen: result.examined, at: now(), health: result.health, gap: result.gap });
      logger.info(
        { mailboxId: mailbox.id, mode: result.mode, resynced: result.resynced, examined: result.examined, kept: result.kept, events: result.events },
        'mailbox synced',
      );
      return { status: 'synced', mode: result.mode, examined: result.examined, kept: result.kept, events: result.events, resynced: result.resynced };
    } catch (error) {
      // What the pass stored stays, and so do its counts (processIds); history stays where it was.
      if (stored.kept > 0) await repo.recordSyncHealth(mailbox.id, { seen: stored.read, health: stored }).catch(() => undefined);
      if (error instanceof GmailError) {
        await repo.recordSyncFailure(mailbox.id, describeSyncFailure(error), now()).catch(() => undefined);
        logger.warn({ mailboxId: mailbox.id, kind: error.kind, status: error.status, reason: error.reason }, 'mailbox sync failed; history kept for the next try');
        return { status: 'failed', kind: error.kind };
      }
      // Disconnected mid-sync: its rows can no longer reference it, and there is nothing left to sync.
      if (!(await mailboxesRepo.findByIdUnscoped(mailbox.id).catch(() => mailbox))) {
        logger.info({ mailboxId: mailbox.id }, 'mailbox was disconnected during its sync');
        return { status: 'skipped', reason: 'unknown_mailbox' };
      }
      logger.error({ mailboxId: mailbox.id, ...safeErrorFields(error) }, 'mailbox sync failed');
      await repo.recordSyncFailure(mailbox.id, 'internal: sync failed on our side; it is retried at the next poll', now()).catch(() => undefined);
      return { status: 'failed', kind: 'internal' };
    }
  }

  /** runSync under the mailbox's cross-process lease, once more for each request that came in meanwhile. */
  async function runLeased(mailboxId: string): Promise<SyncOutcome> {
    const leases = deps.leases;
    if (!leases) return runSync(mailboxId);
    if (!(await leases.acquire(mailboxId))) {
      await leases.request(mailboxId);
      return { status: 'skipped', reason: 'running_elsewhere' };
    }
    const renewal = setInterval(() => void leases.renew(mailboxId).catch(() => undefined), LEASE_RENEW_MS).unref();
    let outcome: SyncOutcome = { status: 'skipped', reason: 'unknown_mailbox' };
    try {
      for (let pass = 0; pass < MAX_PASSES_PER_LEASE; pass++) {
        outcome = await runSync(mailboxId);
        if (!(await leases.release(mailboxId))) break;
        if (pass + 1 < MAX_PASSES_PER_LEASE && !(await leases.acquire(mailboxId))) break;
      }
    } finally {
      clearInterval(renewal);
    }
    return outcome;
  }

  function start(mailboxId: string): Promise<SyncOutcome> {
    const run: Promise<SyncOutcome> = runLeased(mailboxId)
      .catch((error: unknown): SyncOutcome => {
        logger.error({ mailboxId, ...safeErrorFields(error) }, 'mailbox sync failed');
        return { status: 'failed', kind: 'internal' };
      })
      .finally(() => {
        if (inFlight.get(mailboxId) === run) inFlight.delete(mailboxId);
      });
    inFlight.set(mailboxId, run);
    return run;
  }

  /** Syncs one mailbox now (or right after the sync already running for it). Never rejects. */
  function syncMailbox(mailboxId: string): Promise<SyncOutcome> {
    const running = inFlight.get(mailboxId);
    if (!running) return start(mailboxId);
    let next = queued.get(mailboxId);
    if (!next) {
      next = running.then(() => {
        queued.delete(mailboxId);
        return start(mailboxId);
      });
      queued.set(mailboxId, next);
    }
    return next;
  }

  return {
    syncMailbox,

    /** For push: start a sync and return at once; `idle()` waits for it. */
    syncInBackground(mailboxId: string): void {
      void syncMailbox(mailboxId);
    },

    /**
     * The poller: every active syncing mailbox not tried within `minIntervalMs` (default the
     * poll interval) and not paused by a Gmail rate limit. A few mailboxes at a time.
     */
    async syncAllDue(options: { minIntervalMs?: number } = {}) {
      const minInterval = options.minIntervalMs ?? deps.config.gmail.syncPollSeconds * 1000;
      const at = now().getTime();
      const due: MailboxRow[] = [];
      for (const m of await mailboxesRepo.listSyncing()) {
        if (!m.scopes.includes(GMAIL_SCOPES.readonly)) continue;
        const last = Math.max(m.lastSyncAt?.getTime() ?? 0, lastAttempt.get(m.id) ?? 0);
        // The poller ticks once per interval and the last sync ended a moment after its tick: without
        // some slack a mailbox would be "not yet due" at every other tick and wait two intervals.
        if (last !== 0 && at - last < minInterval - Math.min(5_000, minInterval / 4)) continue;
        if ((await pacer.pauseEndsAt(m.id)) !== undefined) continue;
        due.push(m);
      }
      const outcomes: SyncOutcome[] = [];
      await eachLimited(due, 4, async (m) => {
        outcomes.push(await syncMailbox(m.id));
      });
      return { attempted: due.length, synced: outcomes.filter((o) => o.status === 'synced').length, failed: outcomes.filter((o) => o.status === 'failed').length };
    },

    renewWatches: watches.renewWatches,
    /**
     * A mailbox stored by the OAuth callback: watched at once; reconnected, also synced at once —
     * a reply that arrived while it could not be read must stop a follow-up, and the campaigns
     * paused for the reconnect resume only after this sync (campaigns/mailbox-hold.ts).
     */
    mailboxConnected(mailbox: MailboxRow, how: { reconnected: boolean }): void {
      watches.mailboxConnected(mailbox);
      if (how.reconnected && mailbox.syncEnabled) void syncMailbox(mailbox.id);
    },

    /** Shutdown, once waiting for running syncs is over: another process may sync these mailboxes now. */
    async releaseLeases(): Promise<void> {
      await deps.leases?.releaseAll();
    },

    /** Resolves when no sync is running or queued in this process (tests, shutdown). */
    async idle(): Promise<void> {
      await watches.idle();
      while (inFlight.size > 0 || queued.size > 0) {
        await Promise.allSettled([...inFlight.values(), ...queued.values()]);
      }
    },
  };
}

export type SyncService = ReturnType<typeof createSyncService>;
