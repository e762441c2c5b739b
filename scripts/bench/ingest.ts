/**
 * Tracking event ingest: the writer's statement path (events + stats rollups in one
 * transaction, rollups.repo.ts) beside a raw batched `INSERT … SELECT unnest(…)` of the
 * same rows into a copy of tracking_events (same columns and indexes), same database, same
 * run, same batch size. Then a paced run through the real event writer at BENCH_RATE
 * events/s for BENCH_SECONDS: the largest backlog and how long it took to drain.
 *
 *   npm run bench -- ingest                                   # PGlite, batches of 250
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench -- ingest   # server, batches of 1,000
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/connect.js';
import { createLogger } from '../../src/logger.js';
import type { Classification } from '../../src/tracking/classify.js';
import { createEventWriter } from '../../src/tracking/event-writer.js';
import { EVENT_COLUMNS, selectEventsFromArrays } from '../../src/tracking/rollups.repo.js';
import { createTrackingRepo, type TrackingEventRow } from '../../src/tracking/tracking.repo.js';
import { machine, scratchDatabase, seedBenchCampaign } from './common.js';

const SERVER_URL = process.env.BENCH_DATABASE_URL;
const SENDS = Number(process.env.BENCH_SENDS ?? 10_000);
const ROWS = Number(process.env.BENCH_ROWS ?? (SERVER_URL ? 200_000 : 40_000));
const BATCH = Number(process.env.BENCH_BATCH ?? (SERVER_URL ? 1_000 : 250));
const RATE = Number(process.env.BENCH_RATE ?? (SERVER_URL ? 20_000 : 2_000));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';


/** The baseline: the same unnest insert, into a table with the same indexes, nothing else. */
async function rawInsert(db: Db, events: readonly TrackingEventRow[]) {
  await db.execute(sql`insert into bench_raw_events (${EVENT_COLUMNS}) ${selectEventsFromArrays(events)}`);
}

async function main() {
  const { database, label, drop } = await scratchDatabase(SERVER_URL, 'inboxtrail-bench-ingest');
  const db = database.db;
  try {
    await database.migrate();
    const { workspaceId, campaignId, sends } = await seedBenchCampaign(db, 'Bench ingest', SENDS);
    await db.execute(sql`create table bench_raw_events (like tracking_events including all)`);

    // Realistic rows: 70% opens, clicks over 5 links; ~30% human, 50% machine, 20% unknown; times moving forward.
    let clock = Date.now() - 3600_000;
    const verdicts: Classification[] = ['human', 'human', 'human', 'machine', 'machine', 'machine', 'machine', 'machine', 'unknown', 'unknown'];
    const makeRows = (count: number): TrackingEventRow[] =>
      Array.from({ length: count }, (_, i) => {
        const click = Math.random() < 0.3;
        clock += 1;
        return {
          id: randomUUID(),
          workspaceId,
          campaignId,
          sendId: sends[Math.floor(Math.random() * sends.length)]!,
          type: click ? 'click' : 'open',
          linkIndex: click ? Math.floor(Math.random() * 5) : null,
          atMs: clock,
          method: 'GET',
          ip: `203.0.113.${i % 250}`,
          userAgent: UA,
          classification: verdicts[Math.floor(Math.random() * verdicts.length)]!,
          reasons: ['no_machine_signal'],
        };
      });
    const repo = createTrackingRepo(db, { singleConnection: database.kind === 'pglite' });
    const measure = async (write: (rows: TrackingEventRow[]) => Promise<unknown>) => {
      const rows = makeRows(ROWS);
      const started = performance.now();
      for (let i = 0; i < rows.length; i += BATCH) await write(rows.slice(i, i + BATCH));
      return ROWS / ((performance.now() - started) / 1000);
    };

    console.log(machine());
    console.log(`database: ${label}; ${SENDS.toLocaleString('en')} sends, ${ROWS.toLocaleString('en')} events per run, batches of ${BATCH}\n`);
    // Warm-up, then alternate (so that neither side always gets the warmer cache or the quieter moment).
    await rawInsert(db, makeRows(BATCH));
    await repo.insertEvents(makeRows(BATCH));
    const raw: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < 2; round += 1) {
      raw.push(await measure((rows) => rawInsert(db, rows)));
      ours.push(await measure((rows) => repo.insertEvents(rows)));
    }
    const best = (values: number[]) => Math.max(...values);
    const ratio = best(ours) / best(raw);
    console.log('ingest path                                           | events/s (each run)     | best');
    console.log('-'.repeat(92));
    console.log(`${'raw INSERT … SELECT unnest(…) (baseline)'.padEnd(53)} | ${raw.map((r) => r.toFixed(0).padStart(8)).join(' ').padEnd(23)} | ${best(raw).toFixed(0)}`);
    console.log(`${'events + rollups in one transaction (this change)'.padEnd(53)} | ${ours.map((r) => r.toFixed(0).padStart(8)).join(' ').padEnd(23)} | ${best(ours).toFixed(0)}`);
    console.log(`ratio ${ratio.toFixed(2)} (goal >= 0.7) ${ratio >= 0.7 ? 'met' : 'NOT met'}`);

    // Retrying batches that had landed (a lost acknowledgement): nothing is inserted or counted again.
    const again = makeRows(BATCH * 5);
    for (let i = 0; i < again.length; i += BATCH) await repo.insertEvents(again.slice(i, i + BATCH));
    const retryStarted = performance.now();
    let reinserted = 0;
    for (let i = 0; i < again.length; i += BATCH) reinserted += await repo.insertEvents(again.slice(i, i + BATCH));
    console.log(`retry of ${again.length} events already written: ${reinserted} inserted again, ${((again.length / (performance.now() - retryStarted)) * 1000).toFixed(0)} events/s`);

    // Paced: RATE events/s through the real writer (the server gets batches of 1,000, no budget).
    let backlogMax = 0;
    const writer = createEventWriter<TrackingEventRow>({
      prepare: (items) => items,
      insert: (rows) => repo.insertEvents(rows),
      logger: createLogger('warn'),
      batchSize: BATCH,
      maxBuffer: 10_000_000,
    });
    const paced = makeRows(RATE * SECONDS);
    const started = performance.now();
    let pushed = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(paced.length, Math.floor(((performance.now() - started) / 1000) * RATE));
        while (pushed < due) writer.push(paced[pushed++]!);
        backlogMax = Math.max(backlogMax, writer.size);
        if (pushed >= paced.length) {
          clearInterval(timer);
          resolve();
        }
      }, 10);
    });
    const loadEnd = performance.now();
    const backlogAtEnd = writer.size;
    while (writer.size > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const drainMs = performance.now() - loadEnd;
    await writer.close();
    console.log(
      `paced ${RATE.toLocaleString('en')} events/s for ${SECONDS} s through the event writer: largest backlog ${backlogMax.toLocaleString('en')} (${(backlogMax / RATE).toFixed(2)} s of events), ${backlogAtEnd.toLocaleString('en')} at the end, drained ${(drainMs / 1000).toFixed(2)} s after the load stopped`,
    );
  } finally {
    await drop();
    await database.close().catch(() => undefined);
  }
}

await main();
