/*
 * A tracking writer process for crash tests (tracking-rollup-pass.test.ts): writes the events of
 * EVENTS_FILE in batches through the real repo (events + pending record), running a rollup pass
 * after every third batch (ROLL_UP=1), prints `written <n>` after each batch and `done` at the
 * end, then waits to be killed. DATABASE_URL (a server) or PGLITE_DIR (PGlite on disk).
 */
import { readFileSync } from 'node:fs';
import { connect } from '../../src/db/connect.js';
import { createTrackingRepo, type TrackingEventRow } from '../../src/tracking/tracking.repo.js';

const events = JSON.parse(readFileSync(process.env.EVENTS_FILE!, 'utf8')) as TrackingEventRow[];
const batch = Number(process.env.BATCH ?? 40);
const database = await connect(process.env.DATABASE_URL ? { kind: 'postgres', url: process.env.DATABASE_URL, poolSize: 2 } : { kind: 'pglite', dir: process.env.PGLITE_DIR! });
const repo = createTrackingRepo(database.db, { singleConnection: database.kind === 'pglite' });
for (let i = 0, n = 0; i < events.length; i += batch, n += 1) {
  await repo.insertEvents(events.slice(i, i + batch));
  if (process.env.ROLL_UP === '1' && n % 3 === 2) await repo.rollUpPending(25);
  process.stdout.write(`written ${Math.min(events.length, i + batch)}\n`);
}
process.stdout.write('done\n');
setInterval(() => undefined, 60_000);
