import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { eventColumnsOf } from '../../src/tracking/event-columns.js';
import { writeEvents } from '../../src/tracking/events.repo.js';
import { seededRandom } from '../helpers/campaign-fixtures.js';
import { openSharedDatabase, spawnMain, type MainProcess } from '../helpers/main-process.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { waitForHealth } from '../helpers/spawned.js';
import { freePort } from '../helpers/test-app.js';
import { randomTrackingEvents } from '../helpers/tracking-events.js';

/*
 * A stop while one statement holds the database longer than the whole stop may take (5 s): a
 * rollup pass (made slow here by a trigger on its write), or on the embedded database a
 * maintenance ANALYZE (slow here by an expression index that sleeps). PGlite runs a statement
 * synchronously on its thread and cannot cancel it. Before, the stop waited for it — the
 * rollup runner's close() without any limit, then the database's close — until the hard exit
 * (4.95 s, exit 1) ended the process mid-way: no line of what was written, the data dir's lock
 * left. Now each step stops waiting at its share of the deadline, the engine is let go, the
 * process says so and exits 1 within 5 s, and nothing committed is lost: the pass's pending
 * rows are still pending at the next start and are rolled up then, once.
 */

const server = process.env.TEST_DATABASE_URL;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
const cleanup = (undo: () => Promise<unknown> | unknown) => cleanups.push(undo);
afterAll(async () => {
  for (const undo of cleanups.reverse()) await Promise.resolve(undo()).catch(() => undefined);
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const countOf = async (database: Database, query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await database.db.execute(query))[0]!.n);

/** The service on `url` (the database closed here first when embedded), healthy. */
async function startService(url: string): Promise<{ proc: MainProcess; port: number }> {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-long-statement-'));
  cleanup(() => rmSync(dataDir, { recursive: true, force: true }));
  const proc = spawnMain({ DATABASE_URL: url, PORT: String(port), DATA_DIR: dataDir, SANDBOX_PORT: String(await freePort()) }, cleanup);
  expect((await waitForHealth(port, 360))?.status, proc.output().slice(-2000)).toBe(200);
  return { proc, port };
}

/**
 * Until the embedded engine does not answer /readyz within 3 s: one statement holds it (the
 * jobs' other maintenance at start holds it for a few ms at a time).
 */
async function untilEngineBusy(port: number): Promise<void> {
  for (let i = 0; i < 120; i += 1) {
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(3_000) }).then(
      () => true,
      () => false,
    );
    if (!ready) return;
    await sleep(250);
  }
  throw new Error('the engine never got busy');
}

/** SIGTERM; how long until the process exited, and its code. */
async function terminate(proc: MainProcess): Promise<{ ms: number; code: number | null }> {
  const started = Date.now();
  proc.child.kill('SIGTERM');
  const code = await Promise.race([proc.exited, sleep(15_000).then(() => 'hung' as const)]);
  if (code === 'hung') proc.child.kill('SIGKILL');
  return { ms: Date.now() - started, code: code === 'hung' ? null : code };
}

/**
 * SIGTERM, and what every such stop must show: over within 5 s by its own path (not the hard
 * exit), the database let go and said so, exit 1, the data dir's lock released.
 */
async function stopCutOff(proc: MainProcess, embeddedDir: string | undefined) {
  const exit = await terminate(proc);
  const output = proc.output();
  const tracking = output.split('\n').find((line) => line.includes('at shutdown') || line.includes('before shutdown'));
  const report = {
    tracking: JSON.parse(tracking ?? '{}') as { lost?: number; rollupPassUnsettled?: boolean },
    cutOff: output.includes('the database did not close in time'),
    hardExit: output.includes('shutdown did not finish in time'),
  };
  const context = JSON.stringify({ exit, report }) + '\n' + output.slice(-3000);
  console.info(JSON.stringify({ exit, report }));
  expect(exit.ms, context).toBeLessThan(5_000);
  expect(report.hardExit, context).toBe(false);
  expect(report.cutOff, context).toBe(true);
  expect(exit.code, context).toBe(1);
  if (embeddedDir) expect(existsSync(`${embeddedDir}.lock`), context).toBe(false);
  return { report, context };
}

describe('a stop while one statement outlasts it', () => {
  it('a rollup pass running at SIGTERM: the stop ends within 5 s by its own path (exit 1, says so), and the pass’s pending events are rolled up once after', async () => {
    let { database, url, embeddedDir } = await openSharedDatabase(cleanup);
    const workspaceId = String(rowsOf<{ id: string }>(await database.db.execute(sql`insert into workspaces (name) values ('Long pass') returning id`))[0]!.id);
    const seeded = await seedSentCampaign(database.db, workspaceId, { recipients: 20, links: 2 });
    const events = randomTrackingEvents(seededRandom(7), workspaceId, seeded, 300, Date.now() - 60_000);
    await writeEvents(database.db, eventColumnsOf(events));
    // The pass's write statement (it deletes the rows it claimed) sleeps far past the stop.
    await database.db.execute(sql.raw(`create function test_slow_pass() returns trigger language plpgsql as $$ begin perform pg_sleep(300); return null; end $$`));
    await database.db.execute(sql`create trigger test_slow_pass after delete on tracking_rollup_pending for each statement execute function test_slow_pass()`);
    const pendingBefore = await countOf(database, sql`select coalesce(sum(events), 0)::int as n from tracking_rollup_pending`);
    expect(pendingBefore).toBe(300);
    if (embeddedDir) await database.close();

    // The rollup sweep (10 s after the start) takes the pending rows; its pass then sleeps.
    const { proc, port } = await startService(url);
    if (server) {
      await vi.waitFor(async () => expect(await countOf(database, sql`select count(*)::int as n from pg_stat_activity where query like '%tracking_rollup_pending%' and wait_event = 'PgSleep'`)).toBe(1), { timeout: 30_000, interval: 100 });
    } else {
      await untilEngineBusy(port);
    }

    const { report, context } = await stopCutOff(proc, embeddedDir);
    expect(report.tracking.rollupPassUnsettled, context).toBe(true);
    expect(report.tracking.lost, context).toBe(0);

    // The next start (here: this process) finds every event stored and still pending, none rolled up.
    if (embeddedDir) ({ database } = await openSharedDatabase(cleanup, embeddedDir));
    expect(await countOf(database, sql`select count(*)::int as n from tracking_events where campaign_id = ${seeded.campaignId}`)).toBe(300);
    expect(await countOf(database, sql`select coalesce(sum(events), 0)::int as n from tracking_rollup_pending`)).toBe(300);
    expect(await countOf(database, sql`select count(*)::int as n from tracking_rollups where campaign_id = ${seeded.campaignId}`)).toBe(0);
    // On a server the cut pass's session sleeps on until its statement timeout (10 s), then rolls back.
    if (server) await vi.waitFor(async () => expect(await countOf(database, sql`select count(*)::int as n from pg_stat_activity where wait_event = 'PgSleep'`)).toBe(0), { timeout: 20_000, interval: 250 });
    await database.db.execute(sql`drop trigger test_slow_pass on tracking_rollup_pending`);
    // Rolled up once: every event counted.
    let rolledUp = 0;
    for (let pass = await database.runTask('rollUpPending', {}); pass.records > 0; pass = await database.runTask('rollUpPending', {})) rolledUp += pass.events;
    expect(rolledUp).toBe(300);
    expect(await countOf(database, sql`select coalesce(sum(events), 0)::int as n from tracking_rollup_pending`)).toBe(0);
    expect(await countOf(database, sql`select coalesce(sum(human + machine + unknown), 0)::int as n from tracking_rollups where campaign_id = ${seeded.campaignId} and link_index = -1`)).toBe(300);
    await database.close();
  }, 240_000);

  it.skipIf(server)('embedded: a maintenance ANALYZE running at SIGTERM: the stop ends within 5 s (exit 1, says so), and the data dir reopens with everything committed', async () => {
    let { database, url, embeddedDir } = await openSharedDatabase(cleanup);
    // ANALYZE computes an expression index's statistics by calling its function on each sampled
    // row: 100 rows × 0.5 s, once the flag is set (the rows and the index were built before).
    // Maintenance runs with search_path pg_catalog: the function names its table in full.
    await database.db.execute(sql.raw(`create table aaa_slow_analyze (n int primary key)`));
    await database.db.execute(sql.raw(`create table aaa_slow_flag (on_ boolean)`));
    await database.db.execute(
      sql.raw(`create function aaa_slow(n int) returns int language plpgsql immutable as $$
        begin if exists (select 1 from public.aaa_slow_flag) then perform pg_sleep(0.5); end if; return n; end $$`),
    );
    await database.db.execute(sql.raw(`insert into aaa_slow_analyze select generate_series(1, 100)`));
    await database.db.execute(sql.raw(`create index aaa_slow_idx on aaa_slow_analyze (aaa_slow(n))`));
    await database.db.execute(sql.raw(`insert into aaa_slow_flag values (true)`));
    const workspaces = await countOf(database, sql`select count(*)::int as n from workspaces`);
    await database.close();

    // The embedded-analyze job runs at start, table by table in name order: this one (never analysed) first.
    const { proc, port } = await startService(url);
    await untilEngineBusy(port);
    await stopCutOff(proc, embeddedDir);

    // Reopened at once (recovered from the WAL): what was committed is there, the engine answers.
    ({ database } = await openSharedDatabase(cleanup, embeddedDir));
    expect(await countOf(database, sql`select count(*)::int as n from workspaces`)).toBe(workspaces);
    expect(await countOf(database, sql`select count(*)::int as n from aaa_slow_analyze`)).toBe(100);
    await database.close();
  }, 240_000);
});
