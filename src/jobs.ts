import type { Services } from './app.js';
import type { Config } from './config.js';
import { errorNameOf, type Logger } from './logger.js';
import { settlesWithin } from './time.js';

/** The poller looks for due mailboxes at least this often, so a newly connected one does not wait a whole interval. */
const MAX_TICK_MS = 30_000;
/** Watches are checked hourly; each is renewed once it has less than 6 of its 7 days left (about daily). */
const WATCH_CHECK_MS = 3_600_000;
/** How often raw tracking facts past their retention window are truncated. */
const RETENTION_SWEEP_MS = 6 * 3_600_000;
/** tracking_events partitions are checked daily; they are created months ahead. */
const PARTITION_PERIOD_MS = 24 * 3_600_000;
/** How often Idempotency-Key answers past their 24 hours are deleted. */
const IDEMPOTENCY_SWEEP_MS = 3_600_000;
/** How often login, signup and account-mail attempts past their window are deleted (a row outlives its window by at most this). */
const AUTH_ATTEMPTS_SWEEP_MS = 3_600_000;
/** A disconnected mailbox whose revocation Google did not answer is asked again this often. */
const REVOCATION_RETRY_MS = 3_600_000;
/** Deleted items are purged (and retention windows applied) once a day. */
const PURGE_PERIOD_MS = 24 * 3_600_000;
/** Tokens are re-encrypted under the current key once per key version and hour, by one process. */
const REENCRYPT_PERIOD_MS = 3_600_000;
/** The embedded database is analysed this often (and at start), and vacuumed this often: a server's autovacuum does both there. */
const EMBEDDED_ANALYZE_PERIOD_MS = 10 * 60_000;
const EMBEDDED_VACUUM_PERIOD_MS = 24 * 3_600_000;
/** Whether the embedded database is due a checkpoint is asked this often (it is due past 512 MB of WAL, or 5 minutes with some). */
const EMBEDDED_CHECKPOINT_CHECK_MS = 30_000;
/** A process asks whether a scheduled job is due four times a period (at most every minute), so one of them claims it soon after it falls due. */
const SCHEDULE_CHECKS_PER_PERIOD = 4;
const SCHEDULE_CHECK_MAX_MS = 60_000;
/** How often the send worker looks for due sends. */
const SEND_TICK_MS = 1_000;
/** How often a worker process looks for cancelled campaigns whose queued sends are still to be skipped (one probe of an index that is empty unless one is). */
const CANCEL_SWEEP_MS = 1_000;
/** How often the webhook delivery worker looks for due deliveries. */
const WEBHOOK_TICK_MS = 1_000;
/**
 * Shutdown waits at most this long for running work (the whole stop must fit in 5 s). What
 * follows it — writing buffered tracking events, closing the database — gets the other 1.8 s:
 * with 3.5 s of grace, a loaded host (two cores, other processes busy) once took 1.3 s past it
 * and missed the deadline.
 */
export const STOP_GRACE_MS = 3_000;
/**
 * After the grace, releasing this process's sync leases waits at most this long: one update,
 * unless a long statement holds the database (then the leases expire on their own).
 */
export const LEASE_RELEASE_WAIT_MS = 250;

export interface Jobs {
  /** Stops starting work, asks the send worker to hand back what it has not started, waits for running work up to `graceMs`. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

/** The send worker's graceful stop, present once the worker has one (it hands unstarted claims back). */
type StoppableSendWorker = { stop?: (deadlineMs: number) => Promise<void> };

/**
 * Background work of a worker process (ROLE=worker or all), started by main.ts: campaign
 * sending in every process (the ledger's claims keep them apart), and the periodic jobs — Gmail
 * sync polling (the fallback when push is late or off), watch renewal, retention, re-encrypting
 * tokens under the current key — each run by one process per period, whichever claims it in
 * the shared job_schedule table first. Timers are unref()'d (they never keep the process
 * alive); every error is logged, never thrown.
 */
export function startJobs(input: { services: Services; config: Config; logger: Logger; pushTopic?: string }): Jobs {
  const { services, config } = input;
  const logger = input.logger.child({ component: 'jobs' });
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<Promise<unknown>>();
  let stopped = false;

  /** Runs one job unless the previous run of the same job in this process is still going. */
  const guarded = (name: string, job: () => Promise<unknown>) => {
    let current: Promise<unknown> | undefined;
    return () => {
      if (stopped || current) return;
      current = job()
        .catch((error: unknown) => logger.error({ job: name, errorName: errorNameOf(error) }, 'background job failed'))
        .finally(() => {
          running.delete(current!);
          current = undefined;
        });
      running.add(current);
    };
  };

  /** A job that runs once per period across all processes: asked now, then a few times a period. */
  const scheduled = (name: string, periodMs: number, job: () => Promise<unknown>) => {
    const tick = guarded(name, async () => {
      if (!(await services.jobSchedule.claim(name, periodMs))) return;
      logger.debug({ job: name }, 'scheduled job claimed for this period');
      await job();
    });
    timers.push(setInterval(tick, Math.min(periodMs / SCHEDULE_CHECKS_PER_PERIOD, SCHEDULE_CHECK_MAX_MS)).unref());
    tick();
  };

  const currentKey = config.tokenEncryptionKeys.at(-1)!.version;
  scheduled(`reencrypt-tokens:${currentKey}`, REENCRYPT_PERIOD_MS, async () => {
    const report = await services.keyRotation.rotate({ actor: 'system:worker' });
    if (report.rewritten > 0 || report.failed.length > 0) {
      logger.info({ rewritten: report.rewritten, failed: report.failed.length, removableVersions: report.removableVersions }, 'tokens re-encrypted under the current key');
    }
  });

  // The campaign send worker runs in every worker process: reservations (SKIP LOCKED) keep them
  // off each other's rows, each message is claimed by the gate under a lease right before its
  // request, and the mailbox's shared limits pace them together. Sends whose lease expired
  // are resolved first, by searching the mailbox before any retry (invariant 3).
  const send = guarded('campaign-send', async () => {
    await services.sendWorker.recoverStuck();
    await services.sendWorker.tick();
  });
  timers.push(setInterval(send, SEND_TICK_MS).unref());

  // A cancel skips its campaign's queued sends in batches, the first before it answers; the rest,
  // and any cancel a crash cut short, here (src/campaigns/cancelled-sends.ts). Every worker
  // process sweeps: the batches skip rows another holds instead of waiting for them.
  const skipCancelled = guarded('cancelled-sends', async () => {
    const finished = await services.cancelledSends.sweep({ stopping: () => stopped });
    if (finished > 0) logger.info({ finished }, 'cancelled campaigns’ queued sends skipped');
  });
  timers.push(setInterval(skipCancelled, CANCEL_SWEEP_MS).unref());

  // Outbound webhooks: every worker process delivers; claims under a lease keep them apart (src/webhooks/README.md).
  // The pump claims into free slots and returns: requests settle on their own, each refilling its slot.
  const deliverWebhooks = guarded('webhook-delivery', () => services.webhookDelivery.pump());
  timers.push(setInterval(deliverWebhooks, WEBHOOK_TICK_MS).unref());

  scheduled('webhook-retention', RETENTION_SWEEP_MS, async () => {
    const purged = await services.webhookDelivery.purgeExpired(config.webhooks.eventRetentionMs);
    if (purged > 0) logger.info({ purged }, 'webhook events past retention deleted');
  });

  // P-14: IP addresses and user agents of tracking hits are cut after the retention window.
  scheduled('tracking-retention', RETENTION_SWEEP_MS, async () => {
    const truncated = await services.tracking.truncateRawFacts();
    if (truncated > 0) logger.info({ truncated }, 'raw tracking facts past retention truncated');
  });

  // Audit rows past AUDIT_RETENTION_DAYS are the only ones the audit log lets go (migration 0012's trigger).
  scheduled('audit-retention', RETENTION_SWEEP_MS, async () => {
    const purged = await services.auditRetention.purgeExpired();
    if (purged > 0) logger.info({ purged }, 'audit rows past their retention purged');
  });

  // tracking_events' monthly partitions, created months ahead (the default partition catches anything else).
  scheduled('tracking-partitions', PARTITION_PERIOD_MS, async () => {
    const created = await services.tracking.ensurePartitions();
    if (created > 0) logger.info({ created }, 'tracking_events partitions created ahead');
  });

  // Idempotency-Key answers are kept 24 hours; older rows are swept hourly by one process.
  scheduled('idempotency-keys-sweep', IDEMPOTENCY_SWEEP_MS, async () => {
    const deleted = await services.idempotency.sweepExpired();
    if (deleted > 0) logger.info({ deleted }, 'expired idempotency keys deleted');
  });

  // P-13: throttle attempts count only within their window; past it they are deleted, however few new attempts come in.
  scheduled('auth-attempts-sweep', AUTH_ATTEMPTS_SWEEP_MS, async () => {
    const deleted = await services.throttle.sweepExpired();
    if (deleted > 0) logger.info({ deleted }, 'auth attempts past their window deleted');
  });

  // P-13, P-15: retention windows (consent history, inactive accounts), then deleted items past their purge date are removed for real, once a day.
  scheduled('privacy-purge', PURGE_PERIOD_MS, async () => {
    await services.retention.runOnce();
    await services.purge.runOnce();
  });

  // P-06: a disconnect whose revocation Google did not answer is asked again, hourly, until the purge.
  scheduled('gmail-revocation-retry', REVOCATION_RETRY_MS, async () => {
    const settled = await services.mailboxes.retryRevocations();
    if (settled > 0) logger.info({ settled }, 'revocations at Google retried');
  });

  // PGlite has no autovacuum and no checkpointer: without these its planner never had statistics,
  // its dead rows were never reclaimed and its WAL only grew (src/db/embedded-maintenance.ts).
  if (services.embeddedMaintenance.needed) {
    const maintenance = (name: string, periodMs: number, work: () => Promise<string[]>) =>
      scheduled(name, periodMs, async () => {
        const started = performance.now();
        const tables = await work();
        if (tables.length > 0) logger.info({ job: name, tables: tables.length, ms: Math.round(performance.now() - started) }, 'embedded database maintenance done');
      });
    // A table at a time, none started once stopping: at a stop the engine is the tracking writer's.
    maintenance('embedded-analyze', EMBEDDED_ANALYZE_PERIOD_MS, () => services.embeddedMaintenance.analyze({ stopping: () => stopped }));
    maintenance('embedded-vacuum', EMBEDDED_VACUUM_PERIOD_MS, () => services.embeddedMaintenance.vacuum({ stopping: () => stopped }));
    scheduled('embedded-checkpoint', EMBEDDED_CHECKPOINT_CHECK_MS, async () => {
      const started = performance.now();
      const done = await services.embeddedMaintenance.checkpoint();
      if (done) logger.info({ job: 'embedded-checkpoint', walMb: Math.round(done.walBytes / 1048576), ms: Math.round(performance.now() - started) }, 'embedded database checkpoint done');
    });
  }

  const pollSeconds = config.gmail.syncPollSeconds;
  if (pollSeconds > 0) {
    scheduled('gmail-sync-poll', Math.min(pollSeconds * 1000, MAX_TICK_MS), async () => {
      const result = await services.sync.syncAllDue();
      if (result.attempted > 0) logger.debug(result, 'gmail sync poll');
    });
  } else {
    logger.info('Gmail sync polling is off (GMAIL_SYNC_POLL_SECONDS=0): mailboxes sync on push only');
  }

  if (input.pushTopic) {
    scheduled('gmail-watch-renewal', WATCH_CHECK_MS, async () => {
      const result = await services.sync.renewWatches();
      if (result.renewed > 0 || result.failed > 0) logger.info(result, 'gmail watches renewed');
    });
  } else {
    logger.info('no GMAIL_PUSH_TOPIC: no Gmail watches, mailboxes sync by polling only');
  }

  return {
    async stop(options = {}) {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      const sendWorker = services.sendWorker as StoppableSendWorker;
      const graceMs = options.graceMs ?? STOP_GRACE_MS;
      // The send worker gets the same grace: waiting longer than the caller does would record
      // an answer arriving after the grace against a database that is being closed.
      await settlesWithin(Promise.allSettled([...running, services.sync.idle(), sendWorker.stop?.(graceMs), services.webhookDelivery.stop()]), graceMs);
      // Syncs still running are abandoned with the database: let another process take their mailboxes now.
      await services.sync.releaseLeases({ timeoutMs: LEASE_RELEASE_WAIT_MS }).catch(() => undefined);
    },
  };
}
