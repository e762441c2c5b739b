import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Database } from '../db/connect.js';
import type { Logger } from '../logger.js';
import { SAMPLE_EGRESS_FILE, appleMppSource, createAppleMppRanges } from './apple-mpp.js';
import { createClassifier } from './classify.js';
import { createEventWriter } from './event-writer.js';
import { HitColumns, type HitBatch } from './hit-columns.js';
import { clientAddress, type TrustProxy } from './ip.js';
import { createRecorder, type QueuedHit } from './recorder.js';
import { DEFAULT_RAW_RETENTION_DAYS, truncateRawTrackingFacts } from './retention.js';
import { ensureTrackingPartitions } from './partitions.js';
import { createRollupRunner } from './rollup-runner.js';
import { DEFAULT_ROLLUP_WINDOW } from './rollups.repo.js';
import { createSendCache } from './send-cache.js';
import { createStatsRepo } from './stats.repo.js';
import { createStatsService } from './stats.service.js';
import { createTokenCodec } from './tokens.js';
import { createTrackingHandler, type TrackingHandler } from './tracking-handler.js';
import type { EventColumns } from './event-columns.js';
import { createTrackingRepo } from './tracking.repo.js';
import { createTrackingUrls } from './urls.js';

/** Rows per event-writer statement at most (while a backlog waits). */
const MAX_WRITE_BATCH = 1_000;
/**
 * The writer is behind when this many events wait: four of its largest statements. (It writes
 * what gathered every second, so at a few thousand hits a second a pass also waits for the
 * first statements of a flush, tens of milliseconds.)
 */
export const WRITER_BEHIND_EVENTS = 4 * MAX_WRITE_BATCH;

/**
 * The tracking feature, assembled: token codec and URLs, the send cache, classifier,
 * recorder and batched event writer, stats, retention, and the HTTP handler for /t/.
 * Timers are unref'd; close() releases held clicks and writes what is buffered.
 */
export interface TrackingDeps {
  config: Config;
  database: Database;
  logger: Logger;
  /** The app's metrics registry (/metrics). */
  registry: Registry;
  /** http_requests_total: tracking requests are counted there too, by route pattern, like Express routes. */
  requests?: Counter<'method' | 'route' | 'status'>;
  /** Replaces the database insert (tests of the writer's failure handling). */
  insertEvents?: (events: EventColumns) => Promise<number | void>;
}

export function createTracking(deps: TrackingDeps) {
  const { config, database, logger, registry } = deps;
  const settings = config.tracking;
  const codec = createTokenCodec(config.trackingSecrets);
  const urls = createTrackingUrls(codec, config.publicBaseUrl);
  const repo = createTrackingRepo(database.db, { singleConnection: database.kind === 'pglite' });

  const source = appleMppSource(settings.appleMppRanges, config.env);
  if (source === SAMPLE_EGRESS_FILE && config.env !== 'test') logger.info('APPLE_MPP_RANGES unset: Apple Mail Privacy Protection is judged from a sample of a few ranges (development); set it to Apple\'s list');
  const appleMpp = createAppleMppRanges({
    source,
    logger,
    cacheFile: /^https?:/i.test(source) ? path.join(config.dataDir, 'apple-egress-ip-ranges.csv') : undefined,
  });
  appleMpp.start();

  const dropped = new Counter({
    name: 'tracking_events_dropped_total',
    help: 'Tracking events lost: buffer full while the database could not keep up or was down, or unwritten at shutdown',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const written = new Counter({ name: 'tracking_events_written_total', help: 'Tracking events written to the database', registers: [registry] });
  const alreadyWritten = new Counter({
    name: 'tracking_events_already_written_total',
    help: 'Events of a retried batch that had landed before (acknowledgement lost): skipped by id, not counted twice',
    registers: [registry],
  });
  const writeFailures = new Counter({ name: 'tracking_event_write_failures_total', help: 'Failed batch writes (each retried)', registers: [registry] });
  const clicksWithoutDatabase = new Counter({
    name: 'tracking_clicks_without_database_total',
    help: 'Uncached clicks the database did not answer in time: redirected from what was held (stale) or answered 503 (unavailable)',
    labelNames: ['answer'] as const,
    registers: [registry],
  });
  const unresolved = new Counter({
    name: 'tracking_hits_unresolved_total',
    help: 'Valid tracking tokens whose send no longer exists (dropped)',
    labelNames: ['type'] as const,
    registers: [registry],
  });

  const rolledUp = new Counter({ name: 'tracking_events_rolled_up_total', help: 'Tracking events counted into the campaign stats by a rollup pass', registers: [registry] });
  const rollupFailures = new Counter({ name: 'tracking_rollup_failures_total', help: 'Failed rollup passes (their events stay pending and are retried)', registers: [registry] });
  new Gauge({
    name: 'tracking_rollup_pending_events',
    help: 'Tracking events written but not yet counted into the campaign stats (every process: one table)',
    registers: [registry],
    async collect() {
      try {
        this.set(await repo.pendingRollupEvents());
      } catch {
        // The database is unreachable: the gauge keeps its last value (the writer's metrics tell the outage).
      }
    },
  });

  // The stats lag the events by about one pass (rollup-runner.ts); any process rolls up any pending record.
  // The runner asks how far the writer below is behind; the writer tells the runner what it wrote: wired through a holder.
  const writerBacklog = { size: () => 0 };
  const rollups = createRollupRunner({
    // The pass runs on a database thread (database-thread-tasks.ts: PGlite's own, or a server's task thread): its rows and
    // plan never touch the answering thread's heap. Full windows on PGlite under load too: a window's cost is mostly per
    // send and per statement, so smaller ones recorded fewer events a second; what an uncached click then waits for is in
    // ROLLUPS.md (rollup runner) and BENCHMARKS.md (issue 14, fourteenth pass).
    pass: () => database.runTask('rollUpPending', { maxEvents: DEFAULT_ROLLUP_WINDOW }),
    logger,
    eagerEvents: DEFAULT_ROLLUP_WINDOW,
    // More hits than the database can both record and roll up: the events first (a full buffer
    // drops them; a pending record waits safely in the database), the stats catch up after.
    writerBehind: () => writerBacklog.size() >= WRITER_BEHIND_EVENTS,
    hooks: { rolledUp: (result) => rolledUp.inc(result.events), failed: () => rollupFailures.inc() },
  });
  const cache = createSendCache({ repo });
  const classify = createClassifier({ isAppleMppIp: appleMpp.contains });
  // The recorder pushes into the writer and the writer prepares with the recorder: wire through a holder.
  const sink: { push: (item: QueuedHit) => void } = { push: () => undefined };
  const recorder = createRecorder({ cache, classify, push: (item) => sink.push(item), onUnresolved: (type) => unresolved.inc({ type }) });
  const writer = createEventWriter<QueuedHit, HitBatch>({
    prepare: (batch) => recorder.prepare(batch),
    // The statement is built and run on a database thread (database-thread-tasks.ts).
    insert: deps.insertEvents ?? ((events) => database.runTask('writeEvents', { events })),
    logger,
    maxBuffer: settings.bufferMax,
    // An embedded database (PGlite) runs on its own thread (src/db/README.md), so writing takes
    // no time from answering and needs no time budget; its statements are kept to 250 rows
    // (up to 1,000 while a large backlog waits) because every other query waits behind one.
    // A server takes batches of 1,000 (its work is in another process), not more: at 5,000
    // an event cost 59-61 µs of CPU against 46-49 (BENCHMARKS.md, issue 14 third pass).
    batchSize: database.kind === 'pglite' ? 250 : 1_000,
    maxBatchSize: MAX_WRITE_BATCH,
    queue: new HitColumns(),
    hooks: {
      written: (n) => {
        written.inc(n);
        rollups.written(n);
      },
      alreadyWritten: (n) => alreadyWritten.inc(n),
      dropped: (n, reason) => dropped.inc({ reason }, n),
      failed: () => writeFailures.inc(),
    },
  });
  sink.push = (item) => writer.push(item);
  writerBacklog.size = () => writer.size;
  new Gauge({
    name: 'tracking_events_buffered',
    help: 'Tracking events waiting to be written (including clicks held 10 s for the burst and same-client rules)',
    registers: [registry],
    collect() {
      this.set(writer.size + recorder.held);
    },
  });

  // Pre-bound label sets: counting a hit is one increment, no label hashing on the hot path.
  const requestCounters = new Map<string, { inc(): void }>();
  const countRequest = (method: string, route: string, status: number) => {
    if (!deps.requests) return;
    const key = `${method} ${route} ${status}`;
    let counter = requestCounters.get(key);
    if (!counter) {
      counter = deps.requests.labels(method, route, String(status));
      requestCounters.set(key, counter);
    }
    counter.inc();
  };

  const stats = createStatsService({ repo: createStatsRepo(database.db) });
  /** Set by beginShutdown: when it began and what it found (for close()'s log line). */
  let shutdown: { startedAt: number; released: number; buffered: number; writtenMs?: number } | undefined;
  // Held clicks are up to 10 s of traffic: written only once the HTTP grace and the jobs' stop
  // were over, they had ~1.2 s of the 4.8 s a stop has, and a burst's were lost (1,019 of 21,058
  // stored, README "Shutdown"). Now the writer starts on them when the stop starts, and rollups
  // wait for it.
  const beginShutdown = (): void => {
    if (shutdown) return;
    const buffered = writer.size;
    const started = { startedAt: Date.now(), released: recorder.close(), buffered, writtenMs: undefined as number | undefined };
    shutdown = started;
    appleMpp.stop();
    rollups.stop();
    void writer.stop().then((left) => {
      if (left === 0) started.writtenMs = Date.now() - started.startedAt;
    });
  };

  return {
    codec,
    urls,
    cache,
    stats,
    appleMpp,

    /** The request listener's hook for /t/ (see createHttpServer); `trustProxy` is Express's compiled TRUST_PROXY rule. */
    createHandler(trustProxy: TrustProxy): TrackingHandler {
      return createTrackingHandler({
        codec,
        cache,
        recorder,
        clientIp: (req: IncomingMessage) => clientAddress(req, trustProxy),
        count: countRequest,
        onUnresolved: (type) => unresolved.inc({ type }),
        onDatabaseUnavailable: (answer) => clicksWithoutDatabase.inc({ answer }),
        clickTimeoutMs: settings.clickTimeoutMs,
        logger,
      });
    },

    /** Events waiting (buffered + held clicks). */
    pending: () => writer.size + recorder.held,

    /**
     * Classifies held clicks, writes everything now and rolls up what is pending (the stats are
     * then complete); resolves to how many events are still unwritten.
     */
    async flush(): Promise<number> {
      recorder.releaseAll();
      const unwritten = await writer.flush();
      await rollups.drain();
      return unwritten;
    },

    /** P-14 sweep: truncates IP and user agent of events older than TRACKING_RAW_RETENTION_DAYS. */
    truncateRawFacts: (now?: Date) => truncateRawTrackingFacts(database.db, { now, retentionDays: settings.rawRetentionDays ?? DEFAULT_RAW_RETENTION_DAYS }),

    /** Keeps tracking_events' monthly partitions created ahead (partitions.ts). */
    ensurePartitions: (now?: Date) => ensureTrackingPartitions(database.db, { now }),

    /**
     * The first step of a shutdown, as soon as it is asked for (main.ts, before the HTTP grace and
     * the jobs' stop): the held clicks are judged now, with what is known (new connections are
     * refused from now on; a request still in flight is judged at once), no rollup pass starts,
     * and the writer starts on them at once. Idempotent.
     */
    beginShutdown,

    /**
     * Shutdown, before the database closes: writes the buffer (begun by beginShutdown), then
     * rolls up what is pending with the time left, both within one `timeoutMs` (the caller's
     * shutdown deadline; rollups left then stay pending for the next process's sweep). One log
     * line says what was written and what, if anything, was lost (counts only).
     */
    async close({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      beginShutdown();
      const { lost, unsettled } = await writer.close({ timeoutMs });
      const writtenMs = shutdown!.writtenMs ?? Date.now() - shutdown!.startedAt;
      // A pass still running at the deadline is left to commit or roll back (its rows then stay pending).
      const rolledUp = await rollups.close({ timeoutMs: Math.max(0, deadline - Date.now()) });
      const report = { heldClicks: shutdown!.released, buffered: shutdown!.buffered, lost, unsettled, writtenMs, ...(rolledUp ? {} : { rollupPassUnsettled: true }), ms: Date.now() - shutdown!.startedAt };
      if (lost + unsettled > 0) logger.error(report, 'tracking events could not be written before shutdown');
      else logger.info(report, 'tracking events written at shutdown');
    },
  };
}

export type Tracking = ReturnType<typeof createTracking>;
