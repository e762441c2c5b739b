import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { GMAIL_SCOPES, type GmailMessageMetadata, type MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import { describeSyncFailure, eachLimited, parseDate, safeErrorFields } from './sync-support.js';
import { createWatches } from './watches.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import type { MailboxService } from './mailboxes.service.js';
import { readBounceNotice } from './bounces/read-notice.js';
import type { BounceNotice } from './bounces/types.js';
import { SYNC_METADATA_HEADERS, classifyMessage, looksLikeDsn, parseAddressList, parseMessageIds, type MailClassification } from './mail-events.js';
import type { MailboxPacer } from './pacer.js';
import { createSignals } from './signals.js';
import { emptyHealth, type SkipReason, type SyncHealthCounts } from './sync-health.js';
import type { SyncLeases } from './sync-leases.js';
import { ContentAccessRefusedError, type GmailGuard } from '../privacy/gmail-guard.js';
import type { OriginalMessage, SyncRepo } from './sync.repo.js';

/*
 * Reading mail into the CRM (see README.md "Sync"). A full sync lists the newest mail,
 * an incremental one follows history.list from the stored history id; both hand Gmail ids
 * to the same per-message step, which keeps only mail with a CRM contact or about a message
 * we sent, as metadata, and turns replies and bounces into mail_events.
 */

/** What a full sync reads: the newest messages of the last 90 days, at most 500 of them. */
export const FULL_SYNC_QUERY = 'newer_than:90d';
export const FULL_SYNC_MAX_MESSAGES = 500;
/** More changes than this since the last sync: a full sync (newest first) is cheaper than catching up. */
export const MAX_INCREMENTAL_CHANGES = 2_000;
/** Metadata fetches in flight per mailbox; the pacer still meters every one of them. */
const FETCH_CONCURRENCY = 4;
const LIST_PAGE_SIZE = 100;
/** Not mail that happened: drafts, spam, chat. */
const SKIPPED_LABELS = new Set(['DRAFT', 'SPAM', 'CHAT']);

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
}

/** One message's outcome: counters to add (read, kept, a skip reason, the signals recorded). */
type MessageResult = Partial<SyncHealthCounts>;
const skipped = (reason: SkipReason, read = true): MessageResult => ({ ...(read ? { read: 1 } : {}), [reason]: 1 });

export function createSyncService(deps: SyncServiceDeps) {
  const { repo, mailboxesRepo, mailboxes, pacer, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const signals = createSignals(deps.config.signals);
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

  function contactAddresses(mailbox: MailboxRow, addresses: string[]): string[] {
    const own = mailbox.email.toLowerCase();
    return addresses.filter((a) => a !== own);
  }

  /** The first candidate (best first) that is a message of ours. */
  function pickOriginal(classification: MailClassification, found: OriginalMessage[]): OriginalMessage | undefined {
    if (classification.type !== 'reply') return undefined;
    for (const candidate of classification.originalMessageIds) {
      const match = found.find((m) => m.rfc822MessageId === candidate);
      if (match) return match;
    }
    return undefined;
  }

  /**
   * A delivery notice is machine-generated (a mailer daemon's report about our own
   * message), not anyone's personal content: it alone is fetched whole, to read its
   * recipients, status codes and the Message-ID it reports on. Parsed in memory, never stored.
   * It passes the privacy guard on the `service_operation` basis (counted, not audited one by one).
   */
  async function readNotice(mailbox: MailboxRow, api: MailboxGmail, gmailId: string): Promise<BounceNotice | 'gone' | undefined> {
    try {
      const target = { workspaceId: mailbox.workspaceId, mailboxId: mailbox.id, ownerUserId: mailbox.userId, gmailMessageId: gmailId };
      const raw = await deps.guard.readContent({ reader: { kind: 'system', job: 'sync' }, basis: 'service_operation', purpose: 'service' }, target, () => api.getRaw(gmailId));
      return await readBounceNotice(raw);
    } catch (error) {
      if (error instanceof GmailError && error.kind === 'not_found') return 'gone';
      if (error instanceof GmailError || error instanceof ContentAccessRefusedError) throw error;
      logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId }, 'a delivery notice could not be parsed; treated as plain mail');
      return undefined;
    }
  }

  /** The per-message step, shared by full and incremental sync. */
  async function processMessage(mailbox: MailboxRow, api: MailboxGmail, gmailId: string): Promise<MessageResult> {
    let meta: GmailMessageMetadata;
    try {
      meta = await api.getMetadata(gmailId, [...SYNC_METADATA_HEADERS]);
    } catch (error) {
      // Deleted between listing and fetching: nothing to keep.
      if (error instanceof GmailError && error.kind === 'not_found') return skipped('gone', false);
      throw error;
    }
    if (meta.labelIds.some((l) => SKIPPED_LABELS.has(l))) return skipped('ignoredLabel');

    const headers = meta.headers;
    const own = mailbox.email.toLowerCase();
    const from = parseAddressList(headers['from']);
    const to = parseAddressList(headers['to']);
    const cc = parseAddressList(headers['cc']);
    // In SENT, or from the mailbox itself: sent by the owner (from here or any other client).
    const direction = meta.labelIds.includes('SENT') || from[0] === own ? 'outbound' : 'inbound';
    const rfc822MessageId = parseMessageIds(headers['message-id'])[0];
    // A message we sent ourselves is recorded already (the send ledger owns that row).
    if (rfc822MessageId && (await repo.isOwnSend(mailbox.workspaceId, mailbox.id, rfc822MessageId))) return skipped('ownSend');

    const result: MessageResult = { read: 1 };
    let notice: BounceNotice | undefined;
    if (direction === 'inbound' && looksLikeDsn(headers)) {
      const read = await readNotice(mailbox, api, gmailId);
      if (read === 'gone') return skipped('gone');
      notice = read;
      if (!notice) {
        result.unparsedNotice = 1;
        logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId }, 'a delivery notice named no failed recipient we could read; counted as unparsedNotice');
      }
    }
    const classification = classifyMessage({ direction, headers, notice });
    const at = meta.internalDate ?? parseDate(headers['date']) ?? now();

    const original =
      classification.type === 'reply' ? pickOriginal(classification, await repo.findOutboundByRfc822Ids(mailbox.workspaceId, classification.originalMessageIds)) : undefined;
    const bounce =
      classification.type === 'bounce'
        ? await signals.matchBounce(repo, {
            workspaceId: mailbox.workspaceId,
            mailboxId: mailbox.id,
            at,
            candidateIds: classification.originalMessageIds,
            recipients: classification.notice.recipients,
          })
        : undefined;
    if (bounce) {
      if (bounce.unmatched.length > 0) result.unmatchedNotice = 1;
      if (bounce.notSent.length > 0) {
        result.recipientNotSent = 1;
        logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId, recipients: bounce.notSent.length }, 'a bounce notice named addresses this mailbox never sent to; ignored');
      }
    }
    const contacts = await repo.contactsAmong(mailbox.workspaceId, contactAddresses(mailbox, [...from, ...to, ...cc]));
    if (contacts.length === 0 && !original && !bounce?.matches.length) {
      if (!result.unparsedNotice && !result.unmatchedNotice && !result.recipientNotSent) result.notContact = 1;
      return result;
    }

    const stored = await repo.transaction(async (tx) => {
      const row = await tx.insertSyncedMessage(
        {
          workspaceId: mailbox.workspaceId,
          mailboxId: mailbox.id,
          direction,
          status: direction === 'outbound' ? 'sent' : 'received',
          rfc822MessageId: rfc822MessageId ?? null,
          gmailMessageId: meta.id,
          gmailThreadId: meta.threadId || null,
          inReplyTo: parseMessageIds(headers['in-reply-to'])[0] ?? null,
          subject: headers['subject'] ?? null,
          fromAddress: from[0] ?? '',
          toAddresses: to,
          ccAddresses: cc,
          at,
        },
        contacts.map((c) => c.id),
      );
      if (!row) return row;
      const common = { workspaceId: mailbox.workspaceId, sourceGmailMessageId: meta.id, syncedMessageId: row.id, at };
      if (original && classification.type === 'reply') {
        const reply = await signals.recordReply(tx, { ...common, original, from: from[0], automatic: classification.automatic });
        if (reply.recorded) result[classification.automatic ? 'autoReply' : 'reply'] = 1;
      }
      for (const match of bounce?.matches ?? []) {
        const recorded = await signals.recordBounce(tx, { ...common, match, format: (classification as { notice: BounceNotice }).notice.format });
        result.bounce = (result.bounce ?? 0) + recorded.bounces;
        result.delay = (result.delay ?? 0) + recorded.delays;
      }
      return row;
    });
    if (stored) {
      result.kept = 1;
      const events = (result.reply ?? 0) + (result.autoReply ?? 0) + (result.bounce ?? 0) + (result.delay ?? 0);
      if (events > 0) logger.info({ mailboxId: mailbox.id, event: classification.type, events }, 'mail events recorded from sync');
    }
    return result;
  }

  async function processIds(mailbox: MailboxRow, api: MailboxGmail, gmailIds: string[]): Promise<PassTotals> {
    const health = emptyHealth();
    const unique = [...new Set(gmailIds)];
    const todo: string[] = [];
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      const known = await repo.knownGmailIds(mailbox.id, chunk);
      todo.push(...chunk.filter((id) => !known.has(id)));
    }
    await eachLimited(todo, FETCH_CONCURRENCY, async (gmailId) => {
      const result = await processMessage(mailbox, api, gmailId);
      for (const [key, n] of Object.entries(result) as [keyof SyncHealthCounts, number][]) health[key] += n;
    });
    return { examined: health.read, kept: health.kept, events: health.reply + health.autoReply + health.bounce + health.delay, health };
  }

  async function fullSync(mailbox: MailboxRow, api: MailboxGmail, resynced: boolean): Promise<PassResult> {
    // The history id from before listing: anything that arrives while we list is picked up next time.
    const profile = await api.getProfile();
    const ids: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = await api.listMessageIds({ query: FULL_SYNC_QUERY, maxResults: Math.min(LIST_PAGE_SIZE, FULL_SYNC_MAX_MESSAGES - ids.length), pageToken });
      ids.push(...page.ids);
      pageToken = page.nextPageToken;
    } while (pageToken && ids.length < FULL_SYNC_MAX_MESSAGES);
    // Oldest first, as history would have delivered them: an original tends to be stored before its replies.
    const totals = await processIds(mailbox, api, ids.slice(0, FULL_SYNC_MAX_MESSAGES).reverse());
    return { mode: 'full', resynced, historyId: profile.historyId || undefined, ...totals };
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
    return { ids, historyId };
  }

  async function syncPass(mailbox: MailboxRow, api: MailboxGmail): Promise<PassResult> {
    if (!mailbox.historyId) return fullSync(mailbox, api, false);
    let changes: Awaited<ReturnType<typeof listChanges>>;
    try {
      changes = await listChanges(api, mailbox.historyId);
    } catch (error) {
      if (!(error instanceof GmailError) || error.kind !== 'not_found') throw error;
      // Gmail keeps history for about a week; an older start id is a 404 and means "sync everything again".
      logger.info({ mailboxId: mailbox.id }, 'stored history id is too old for Gmail; doing a full resync');
      return fullSync(mailbox, api, true);
    }
    if (!changes) {
      logger.info({ mailboxId: mailbox.id, limit: MAX_INCREMENTAL_CHANGES }, 'too many changes since the last sync; doing a full resync');
      return fullSync(mailbox, api, true);
    }
    const totals = await processIds(mailbox, api, changes.ids);
    return { mode: 'incremental', resynced: false, historyId: changes.historyId, ...totals };
  }

  async function runSync(mailboxId: string): Promise<SyncOutcome> {
    const mailbox = await mailboxesRepo.findByIdUnscoped(mailboxId);
    if (!mailbox) return { status: 'skipped', reason: 'unknown_mailbox' };
    if (!mailbox.syncEnabled || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return { status: 'skipped', reason: 'sync_disabled' };
    if (mailbox.status !== 'active') return { status: 'skipped', reason: 'needs_reconnect' };
    lastAttempt.set(mailbox.id, now().getTime());
    try {
      // withGmail marks the mailbox needs_reconnect when Google says the grant is gone.
      const result = await mailboxes.withGmail(mailbox, (api) => syncPass(mailbox, api));
      // History advances only here, after every message up to it was processed.
      await repo.recordSyncSuccess(mailbox.id, { historyId: result.historyId, seen: result.examined, at: now(), health: result.health });
      logger.info(
        { mailboxId: mailbox.id, mode: result.mode, resynced: result.resynced, examined: result.examined, kept: result.kept, events: result.events },
        'mailbox synced',
      );
      return { status: 'synced', mode: result.mode, examined: result.examined, kept: result.kept, events: result.events, resynced: result.resynced };
    } catch (error) {
      if (error instanceof GmailError) {
        await repo.recordSyncFailure(mailbox.id, describeSyncFailure(error)).catch(() => undefined);
        logger.warn({ mailboxId: mailbox.id, kind: error.kind, status: error.status, reason: error.reason }, 'mailbox sync failed; history kept for the next try');
        return { status: 'failed', kind: error.kind };
      }
      // Disconnected mid-sync: its rows can no longer reference it, and there is nothing left to sync.
      if (!(await mailboxesRepo.findByIdUnscoped(mailbox.id).catch(() => mailbox))) {
        logger.info({ mailboxId: mailbox.id }, 'mailbox was disconnected during its sync');
        return { status: 'skipped', reason: 'unknown_mailbox' };
      }
      logger.error({ mailboxId: mailbox.id, ...safeErrorFields(error) }, 'mailbox sync failed');
      await repo.recordSyncFailure(mailbox.id, 'internal: sync failed on our side; it is retried at the next poll').catch(() => undefined);
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
    mailboxConnected: watches.mailboxConnected,

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
