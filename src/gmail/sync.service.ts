import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { settlesWithin } from '../time.js';
import { GMAIL_SCOPES } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import { describeSyncFailure, eachLimited, safeErrorFields } from './sync-support.js';
import { createWatches } from './watches.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import type { MailboxService } from './mailboxes.service.js';
import type { MailboxPacer } from './pacer.js';
import { createSignals } from './signals.js';
import { addHealth, emptyHealth } from './sync-health.js';
import { SyncLeaseLost, type SyncLeases } from './sync-leases.js';
import type { GmailGuard } from '../privacy/gmail-guard.js';
import type { SyncRepo } from './sync.repo.js';
import { createMessageSync } from './sync-message.js';
import { createSyncPass, type LeaseCheck, type SyncMode } from './sync-pass.js';

export { FULL_SYNC_MAX_MESSAGES, FULL_SYNC_QUERY, MAX_INCREMENTAL_CHANGES, type SyncMode } from './sync-pass.js';

/*
 * Reading mail into the CRM (see README.md "Sync"). A full sync lists the newest mail,
 * an incremental one follows history.list from the stored history id (the pass: sync-pass.ts);
 * both hand Gmail ids to the same per-message step (sync-message.ts), which keeps only mail with
 * a CRM contact or about a message we sent, as metadata, and turns replies and bounces into
 * mail_events. This file decides when passes run: one per mailbox at a time, across processes.
 */

export type SyncOutcome =
  | { status: 'synced'; mode: SyncMode; examined: number; kept: number; events: number; resynced: boolean }
  | { status: 'failed'; kind: GmailError['kind'] | 'internal' }
  | { status: 'skipped'; reason: 'unknown_mailbox' | 'sync_disabled' | 'needs_reconnect' | 'running_elsewhere' | 'lease_lost' };

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



export function createSyncService(deps: SyncServiceDeps) {
  const { repo, mailboxesRepo, mailboxes, pacer, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const messageSync = createMessageSync({ repo, signals: createSignals(deps.config.signals), guard: deps.guard, logger, now });
  const { syncPass } = createSyncPass({ repo, messageSync, config: deps.config, logger, now });
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

  /** One pass; `held` (under a lease) stops it where another process took the mailbox's lease. */
  async function runSync(mailboxId: string, held?: LeaseCheck): Promise<SyncOutcome> {
    const mailbox = await mailboxesRepo.findByIdUnscoped(mailboxId);
    if (!mailbox) return { status: 'skipped', reason: 'unknown_mailbox' };
    if (!mailbox.syncEnabled || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return { status: 'skipped', reason: 'sync_disabled' };
    if (mailbox.status !== 'active') return { status: 'skipped', reason: 'needs_reconnect' };
    lastAttempt.set(mailbox.id, now().getTime());
    const stored = emptyHealth();
    try {
      // withGmail marks the mailbox needs_reconnect when Google says the grant is gone.
      const result = await mailboxes.withGmail(mailbox, (api) => syncPass(mailbox, api, stored, held));
      // History advances only here, after every message up to it was processed.
      // With a resumed resync's counts of what earlier tries read up to its checkpoint.
      const health = result.health;
      if (result.inherited) addHealth(health, result.inherited);
      // Still ours (and extended by a lease's length), and checked again in the very statement
      // that records the end: no other process records this mailbox's sync meanwhile.
      await held?.();
      const leaseOwner = held ? deps.leases?.owner : undefined;
      if (!(await repo.recordSyncSuccess(mailbox.id, { historyId: result.historyId, seen: health.read, at: now(), health, gap: result.gap, leaseOwner }))) {
        throw new SyncLeaseLost();
      }
      logger.info(
        { mailboxId: mailbox.id, mode: result.mode, resynced: result.resynced, examined: result.examined, kept: result.kept, events: result.events },
        'mailbox synced',
      );
      return { status: 'synced', mode: result.mode, examined: result.examined, kept: result.kept, events: result.events, resynced: result.resynced };
    } catch (error) {
      // What the pass stored stays, and so do its counts (processIds); history stays where it was.
      if (stored.kept > 0) await repo.recordSyncHealth(mailbox.id, { seen: stored.read, health: stored }).catch(() => undefined);
      if (error instanceof SyncLeaseLost) {
        // The process holding the lease now goes on from the stored history id; it skips what this pass stored.
        logger.warn({ mailboxId: mailbox.id }, 'mailbox sync stopped: another process took its lease (this one stalled past it)');
        return { status: 'skipped', reason: 'lease_lost' };
      }
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
    // Renewed in the background (a batch can wait long on Gmail) and checked by the pass before
    // each batch and before it records its end: a lease found lost stops the pass (SyncLeaseLost).
    // A renewal's answer counts only for the lease it was asked under: one asked between a pass's
    // release and the next acquire finds no owner, which is not a loss (a reviewer's finding).
    let lost = false;
    let lease = 1;
    let holding = true;
    const renewal = setInterval(() => {
      if (!holding) return;
      const askedUnder = lease;
      void leases.renew(mailboxId).then((ours) => void (lost ||= !ours && askedUnder === lease), () => undefined);
    }, LEASE_RENEW_MS).unref();
    const held: LeaseCheck = async () => {
      if (lost || !(await leases.renew(mailboxId))) {
        lost = true;
        throw new SyncLeaseLost();
      }
    };
    let outcome: SyncOutcome = { status: 'skipped', reason: 'unknown_mailbox' };
    try {
      for (let pass = 0; pass < MAX_PASSES_PER_LEASE; pass++) {
        outcome = await runSync(mailboxId, held);
        if (lost) break;
        holding = false;
        lease += 1;
        if (!(await leases.release(mailboxId))) break;
        if (pass + 1 < MAX_PASSES_PER_LEASE && !(await leases.acquire(mailboxId))) break;
        holding = true;
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

    /**
     * Shutdown, once waiting for running syncs is over: another process may sync these mailboxes
     * now. Waits at most `timeoutMs` (default: as long as it takes): a database held by a long
     * statement kept a stop here past its deadline; a lease not released expires on its own (2 min).
     */
    async releaseLeases(options: { timeoutMs?: number } = {}): Promise<void> {
      if (deps.leases) await settlesWithin(deps.leases.releaseAll(), options.timeoutMs ?? Number.POSITIVE_INFINITY);
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
