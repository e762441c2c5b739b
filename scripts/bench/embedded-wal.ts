/**
 * The embedded database's WAL, with and without the maintenance job's checkpoints
 * (src/db/embedded-maintenance.ts `checkpoint`): PGlite runs PostgreSQL as one backend with no
 * checkpointer, so without them its WAL only grows while it runs, and a restart after a crash
 * replays all of it. For each mode, a child process opens a fresh on-disk PGlite the way the
 * app does (`connect`, migrations), writes BENCH_ROWS events into a copy of `tracking_events`
 * (its indexes too) in batches of 1,000, and — in the checkpointing mode — asks the job's
 * question (`checkpoint()`, default thresholds) every BENCH_CHECK_EVERY batches, as the job
 * asks every 30 s. It prints the size of `pg_wal` and is killed with SIGKILL mid-run (no clean
 * shutdown: no shutdown checkpoint). The parent then times the reopening (recovery) and the
 * first query. Baseline: the same without the job.
 *
 *   npm run bench -- embedded-wal          (BENCH_ROWS=1500000, BENCH_CHECK_EVERY=25)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { connect } from '../../src/db/connect.js';
import { createEmbeddedMaintenance } from '../../src/db/embedded-maintenance.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { EVENT_COLUMNS, selectEventsFromArrays } from '../../src/tracking/events.repo.js';
import type { EventColumns } from '../../src/tracking/event-columns.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_500_000);
const CHECK_EVERY = Number(process.env.BENCH_CHECK_EVERY ?? 25);
const BATCH = 1_000;
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

const walMb = async (db: Awaited<ReturnType<typeof connect>>['db']) =>
  Number(rowsOf<{ mb: number }>(await db.execute(sql`select (sum(size) / 1048576.0)::float8 as mb from pg_ls_waldir()`))[0]!.mb).toFixed(0);

/** The child: writes, prints, and dies without closing. */
async function write(dir: string, checkpointing: boolean) {
  const database = await connect({ kind: 'pglite', dir });
  await database.migrate();
  const db = database.db;
  await db.execute(sql`create table bench_wal_events (like tracking_events including all)`);
  const maintenance = createEmbeddedMaintenance(database);
  const ids = { workspace: randomUUID(), campaign: randomUUID(), sends: Array.from({ length: 1_000 }, () => randomUUID()) };
  let clock = Date.now() - 3_600_000;
  let checkpoints = 0;
  /** The longest checkpoint, in ms: the database thread runs nothing else meanwhile. */
  let longest = 0;
  const started = performance.now();
  for (let batch = 0; batch * BATCH < ROWS; batch += 1) {
    const n = Math.min(BATCH, ROWS - batch * BATCH);
    const events: EventColumns = {
      id: Array.from({ length: n }, () => randomUUID()),
      workspaceId: Array(n).fill(ids.workspace),
      campaignId: Array(n).fill(ids.campaign),
      sendId: Array.from({ length: n }, (_, i) => ids.sends[(batch * BATCH + i) % ids.sends.length]!),
      type: Array<'open'>(n).fill('open'),
      linkIndex: Array<null>(n).fill(null),
      atMs: Array.from({ length: n }, () => (clock += 1)),
      method: Array(n).fill('GET'),
      ip: Array(n).fill('203.0.113.7'),
      userAgent: Array(n).fill(UA),
      classification: Array<'human'>(n).fill('human'),
      reasons: Array<string[]>(n).fill(['no_machine_signal']),
    };
    await db.execute(sql`insert into bench_wal_events (${EVENT_COLUMNS}) ${selectEventsFromArrays(events)}`);
    if (checkpointing && batch % CHECK_EVERY === CHECK_EVERY - 1) {
      const asked = performance.now();
      if (await maintenance.checkpoint()) {
        checkpoints += 1;
        longest = Math.max(longest, performance.now() - asked);
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`  wrote ${ROWS.toLocaleString('en-US')} rows in ${seconds.toFixed(1)} s (${Math.round(ROWS / seconds).toLocaleString('en-US')}/s), checkpoints taken: ${checkpoints}${checkpoints > 0 ? ` (longest ${Math.round(longest)} ms)` : ''}, pg_wal ${await walMb(db)} MB; killed (SIGKILL)`);
  process.kill(process.pid, 'SIGKILL');
}

async function reopen(dir: string) {
  const started = performance.now();
  const database = await connect({ kind: 'pglite', dir });
  const rows = Number(rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from bench_wal_events`))[0]!.n);
  const ms = performance.now() - started;
  console.log(`  reopened after the kill in ${(ms / 1000).toFixed(2)} s (recovery included), ${rows.toLocaleString('en-US')} rows there, pg_wal ${await walMb(database.db)} MB`);
  await database.close();
}

async function main() {
  const [mode, dir] = process.argv.slice(2);
  if (mode === 'write' || mode === 'write-checkpointing') return write(dir!, mode === 'write-checkpointing');
  console.log(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (const [label, childMode] of [['without checkpoints (baseline: PGlite alone)', 'write'], ['with the maintenance job\'s checkpoints', 'write-checkpointing']] as const) {
    const root = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-bench-wal-'));
    const dir = path.join(root, 'pglite');
    try {
      console.log(`${label}:`);
      await new Promise<void>((resolve) => {
        const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, childMode, dir], { stdio: 'inherit' });
        child.once('exit', () => resolve());
      });
      await reopen(dir);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
}

await main();
