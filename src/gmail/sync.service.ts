import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { GMAIL_SCOPES, type GmailMessageMetadata, type MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import type { MailboxService } from './mailboxes.service.js';
import {
  SYNC_METADATA_HEADERS,
  classifyMessage,
  looksLikeDsn,
  parseAddressList,
  parseMessageIds,
  readDsn,
  type DsnReport,
  type MailClassification,
} from './mail-events.js';
import type { MailboxPacer } from './pacer.js';
import type { SyncLeases } from './sync-leases.js';
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
const DAY_MS = 86_400_000;
/** Gmail watches last 7 days; a watch with less than 6 left is renewed, so each one is renewed about daily. */
const WATCH_RENEW_BEFORE_MS = 6 * DAY_MS;

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
  config: Pick<Config, 'gmail'>;
  /** Topic users.watch publishes to; undefined → no watches (polling only). */
  pushTopic?: string;
  /** One sync per mailbox across processes; without it, only within this process. */
  leases?: SyncLeases;
  logger: Logger;
  now?: () => Date;
}

/** A held sync lease is extended this often (it lasts two minutes). */
const LEASE_RENEW_MS = 30_000;
/** Syncs in a row for one lease when requests keep arriving; the next request starts afresh. */
const MAX_PASSES_PER_LEASE = 3;

interface PassResult {
  mode: SyncMode;
  resynced: boolean;
  historyId?: string;
  examined: number;
  kept: number;
  events: number;
}

interface MessageResult {
  examined: boolean;
  kept: boolean;
  events: number;
}

/** The reason shown as the mailbox's `sync.lastError`: built from the error kind only, never from request data. */
export function describeSyncFailure(error: GmailError): string {
  switch (error.kind) {
    case 'auth_revoked':
      return 'auth_revoked: Google no longer accepts this mailbox’s access; reconnect it to resume syncing';
    case 'rate_limited':
      return `rate_limited: Gmail is rate limiting this mailbox${error.retryAfterSeconds ? ` (retry after ${error.retryAfterSeconds}s)` : ''}; sync resumes at the next poll`;
    case 'temporary':
      return 'temporary: Gmail did not answer; sync resumes at the next poll';
    case 'not_found':
      return 'not_found: Gmail could not find what sync asked for';
    default:
      return `permanent: Gmail refused a sync request${error.status ? ` (HTTP ${error.status}${error.reason ? `, ${error.reason}` : ''})` : ''}`;
  }
}

/**
 * Runs `work` over `items` with at most `limit` at a time. After the first failure no new
 * item starts; the ones in flight finish (what they wrote stays), then that failure is thrown.
 */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

export function createSyncService(deps: SyncServiceDeps) {
  const { repo, mailboxesRepo, mailboxes, pacer, logger } = deps;
  const now = deps.now ?? (() => new Date());

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
    if (classification.type === 'other') return undefined;
    for (const candidate of classification.originalMessageIds) {
      const match = found.find((m) => m.rfc822MessageId === candidate);
      if (match) return match;
    }
    return undefined;
  }

  /** The per-message step, shared by full and incremental sync. */
  async function processMessage(mailbox: MailboxRow, api: MailboxGmail, gmailId: string): Promise<MessageResult> {
    let meta: GmailMessageMetadata;
    try {
      meta = await api.getMetadata(gmailId, [...SYNC_METADATA_HEADERS]);
    } catch (error) {
      // Deleted between listing and fetching: nothing to keep.
      if (error instanceof GmailError && error.kind === 'not_found') return { examined: false, kept: false, events: 0 };
      throw error;
    }
    if (meta.labelIds.some((l) => SKIPPED_LABELS.has(l))) return { examined: true, kept: false, events: 0 };

    const headers = meta.headers;
    const own = mailbox.email.toLowerCase();
    const from = parseAddressList(headers['from']);
    const to = parseAddressList(headers['to']);
    const cc = parseAddressList(headers['cc']);
    // In SENT, or from the mailbox itself: sent by the owner (from here or any other client).
    const direction = meta.labelIds.includes('SENT') || from[0] === own ? 'outbound' : 'inbound';
    const rfc822MessageId = parseMessageIds(headers['message-id'])[0];
    // A message we sent ourselves is recorded already (the send ledger owns that row).
    if (rfc822MessageId && (await repo.isOwnSend(mailbox.workspaceId, mailbox.id, rfc822MessageId))) return { examined: true, kept: false, events: 0 };

    let dsn: DsnReport | undefined;
    if (direction === 'inbound' && looksLikeDsn(headers)) {
      // A delivery status notification is machine-generated (a mailer daemon's report about
      // our own message), not anyone's personal content: it alone is fetched whole, to read
      // its status codes and the Message-ID it reports on. Parsed in memory, never stored.
      try {
        dsn = await readDsn(await api.getRaw(gmailId));
      } catch (error) {
        if (error instanceof GmailError && error.kind === 'not_found') return { examined: true, kept: false, events: 0 };
        if (error instanceof GmailError) throw error;
        logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId }, 'a delivery report could not be parsed; treated as plain mail');
      }
    }
    const classification = classifyMessage({ direction, headers, dsn });
    const original =
      classification.type === 'other' ? undefined : pickOriginal(classification, await repo.findOutboundByRfc822Ids(mailbox.workspaceId, classification.originalMessageIds));
    const contacts = await repo.contactsAmong(mailbox.workspaceId, contactAddresses(mailbox, [...from, ...to, ...cc]));
    if (contacts.length === 0 && !original) return { examined: true, kept: false, events: 0 };

    const at = meta.internalDate ?? parseDate(headers['date']) ?? now();
    let events = 0;
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
      if (!row || !original) return row;

      if (classification.type === 'reply') {
        if (
          await tx.insertMailEvent({
            workspaceId: mailbox.workspaceId,
            messageId: original.id,
            type: 'reply',
            sourceGmailMessageId: meta.id,
            recipient: from[0] ?? null,
            detail: { automatic: classification.automatic, syncedMessageId: row.id },
            at,
          })
        ) {
          events += 1;
        }
      } else if (classification.type === 'bounce') {
        // Only addresses the original was sent to can be suppressed by its report: a forged
        // "bounce" must not be able to suppress an arbitrary address of the workspace.
        const sentTo = new Set([...original.toAddresses, ...original.ccAddresses].map((a) => a.toLowerCase()));
        const suppressed: string[] = [];
        for (const r of classification.recipients) {
          if (r.kind !== 'hard' || !sentTo.has(r.recipient)) continue;
          await tx.suppress({ workspaceId: mailbox.workspaceId, email: r.recipient, reason: 'bounce', source: `dsn:${meta.id}` });
          suppressed.push(r.recipient);
        }
        // One event per report; a report naming several recipients lists them all.
        const main = classification.recipients.find((r) => r.kind === 'hard') ?? classification.recipients[0]!;
        if (
          await tx.insertMailEvent({
            workspaceId: mailbox.workspaceId,
            messageId: original.id,
            type: 'bounce',
            sourceGmailMessageId: meta.id,
            recipient: main.recipient,
            detail: {
              kind: main.kind,
              status: main.status ?? null,
              recipient: main.recipient,
              ...(main.action ? { action: main.action } : {}),
              ...(classification.recipients.length > 1 ? { recipients: classification.recipients } : {}),
              suppressed,
              syncedMessageId: row.id,
            },
            at,
          })
        ) {
          events += 1;
        }
      }
      return row;
    });
    if (stored && events > 0) {
      logger.info({ mailboxId: mailbox.id, messageId: original!.id, event: classification.type }, 'mail event recorded from sync');
    }
    return { examined: true, kept: stored !== undefined, events };
  }

  async function processIds(mailbox: MailboxRow, api: MailboxGmail, gmailIds: string[]) {
    const totals = { examined: 0, kept: 0, events: 0 };
    const unique = [...new Set(gmailIds)];
    const todo: string[] = [];
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      const known = await repo.knownGmailIds(mailbox.id, chunk);
      todo.push(...chunk.filter((id) => !known.has(id)));
    }
    await eachLimited(todo, FETCH_CONCURRENCY, async (gmailId) => {
      const result = await processMessage(mailbox, api, gmailId);
      if (result.examined) totals.examined += 1;
      if (result.kept) totals.kept += 1;
      totals.events += result.events;
    });
    return totals;
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
      await repo.recordSyncSuccess(mailbox.id, { historyId: result.historyId, seen: result.examined, at: now() });
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
        if (last !== 0 && at - last < minInterval) continue;
        if ((await pacer.pauseEndsAt(m.id)) !== undefined) continue;
        due.push(m);
      }
      const outcomes: SyncOutcome[] = [];
      await eachLimited(due, 4, async (m) => {
        outcomes.push(await syncMailbox(m.id));
      });
      return { attempted: due.length, synced: outcomes.filter((o) => o.status === 'synced').length, failed: outcomes.filter((o) => o.status === 'failed').length };
    },

    /** users.watch for syncing mailboxes whose watch is missing or has less than 6 of its 7 days left. */
    async renewWatches() {
      const topic = deps.pushTopic;
      if (!topic) return { renewed: 0, failed: 0 };
      let renewed = 0;
      let failed = 0;
      for (const mailbox of await repo.listWatchesDue(new Date(now().getTime() + WATCH_RENEW_BEFORE_MS))) {
        if (!mailbox.scopes.includes(GMAIL_SCOPES.readonly)) continue;
        try {
          const watch = await mailboxes.withGmail(mailbox, (api) => api.watch(topic));
          await repo.recordWatch(mailbox.id, watch.expiresAt ?? null);
          renewed += 1;
        } catch (error) {
          failed += 1;
          const details = error instanceof GmailError ? { kind: error.kind, status: error.status, reason: error.reason } : safeErrorFields(error);
          logger.warn({ mailboxId: mailbox.id, ...details }, 'renewing the Gmail watch failed; polling still covers this mailbox');
        }
      }
      return { renewed, failed };
    },

    /** Shutdown, once waiting for running syncs is over: another process may sync these mailboxes now. */
    async releaseLeases(): Promise<void> {
      await deps.leases?.releaseAll();
    },

    /** Resolves when no sync is running or queued in this process (tests, shutdown). */
    async idle(): Promise<void> {
      while (inFlight.size > 0 || queued.size > 0) {
        await Promise.allSettled([...inFlight.values(), ...queued.values()]);
      }
    },
  };
}

/**
 * What of an unexpected error may be logged: a failed query's message quotes its parameters
 * (subjects, addresses), so only the error's name and database code are kept.
 */
function safeErrorFields(error: unknown): { errorName?: string; code?: string } {
  if (!(error instanceof Error)) return {};
  const code = (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code;
  return { errorName: error.name, ...(typeof code === 'string' ? { code } : {}) };
}

function parseDate(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export type SyncService = ReturnType<typeof createSyncService>;
