import type { Services } from './app.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

/** The poller looks for due mailboxes at least this often, so a newly connected one does not wait a whole interval. */
const MAX_TICK_MS = 30_000;
/** Watches are checked hourly; each is renewed once it has less than 6 of its 7 days left (about daily). */
const WATCH_CHECK_MS = 3_600_000;
/** How often raw tracking facts past their retention window are truncated. */
const RETENTION_SWEEP_MS = 6 * 3_600_000;
/** How often the send worker looks for due sends. */
const SEND_TICK_MS = 1_000;
/** Shutdown waits this long for running syncs before the database closes under them. */
const STOP_GRACE_MS = 10_000;

export interface Jobs {
  stop(): Promise<void>;
}

/**
 * Background work of one process, started by main.ts after the server listens: campaign sending, Gmail sync
 * polling (the fallback when push is late or off), watch renewal, and re-encrypting tokens
 * under the current key once at boot. Timers are unref()'d (they never keep the process
 * alive); every error is logged, never thrown.
 */
export function startJobs(input: { services: Services; config: Config; logger: Logger; pushTopic?: string }): Jobs {
  const { services, config } = input;
  const logger = input.logger.child({ component: 'jobs' });
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<Promise<unknown>>();
  let stopped = false;

  /** Runs one job unless the previous run of the same job is still going. */
  const guarded = (name: string, job: () => Promise<unknown>) => {
    let current: Promise<unknown> | undefined;
    return () => {
      if (stopped || current) return;
      current = job()
        .catch((error: unknown) => logger.error({ job: name, errorName: error instanceof Error ? error.name : typeof error }, 'background job failed'))
        .finally(() => {
          running.delete(current!);
          current = undefined;
        });
      running.add(current);
    };
  };

  const reencrypt = guarded('reencrypt-tokens', async () => {
    const rewritten = await services.mailboxes.reencryptTokens();
    if (rewritten > 0) logger.info({ rewritten }, 'tokens re-encrypted under the current key');
  });
  reencrypt();

  // The campaign send worker, in-process (with PGlite there is only this process; with a
  // server several processes may run it: the ledger's SKIP LOCKED claims keep them apart).
  // Stuck sends are resolved first, by searching the mailbox before any retry (invariant 3).
  const send = guarded('campaign-send', async () => {
    await services.sendWorker.recoverStuck();
    await services.sendWorker.tick();
  });
  timers.push(setInterval(send, SEND_TICK_MS).unref());

  // P-14: IP addresses and user agents of tracking hits are cut after the retention window.
  const retention = guarded('tracking-retention', async () => {
    const truncated = await services.tracking.truncateRawFacts();
    if (truncated > 0) logger.info({ truncated }, 'raw tracking facts past retention truncated');
  });
  timers.push(setInterval(retention, RETENTION_SWEEP_MS).unref());
  retention();

  const pollSeconds = config.gmail.syncPollSeconds;
  if (pollSeconds > 0) {
    const poll = guarded('gmail-sync-poll', async () => {
      const result = await services.sync.syncAllDue();
      if (result.attempted > 0) logger.debug(result, 'gmail sync poll');
    });
    timers.push(setInterval(poll, Math.min(pollSeconds * 1000, MAX_TICK_MS)).unref());
    poll();
  } else {
    logger.info('Gmail sync polling is off (GMAIL_SYNC_POLL_SECONDS=0): mailboxes sync on push only');
  }

  if (input.pushTopic) {
    const renew = guarded('gmail-watch-renewal', async () => {
      const result = await services.sync.renewWatches();
      if (result.renewed > 0 || result.failed > 0) logger.info(result, 'gmail watches renewed');
    });
    timers.push(setInterval(renew, WATCH_CHECK_MS).unref());
    renew();
  } else {
    logger.info('no GMAIL_PUSH_TOPIC: no Gmail watches, mailboxes sync by polling only');
  }

  return {
    async stop() {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      const settled = Promise.allSettled([...running, services.sync.idle()]);
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise<void>((resolve) => (grace = setTimeout(resolve, STOP_GRACE_MS).unref()))]);
      clearTimeout(grace);
    },
  };
}
