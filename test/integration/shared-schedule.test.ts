import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { createSyncLeases } from '../../src/gmail/sync-leases.js';
import { createJobSchedule } from '../../src/job-schedule.js';
import { createTestDatabase } from '../helpers/test-db.js';
import { until } from '../helpers/until.js';

/*
 * The two shared-state primitives of invariant 10 on a real database (PGlite, or the server
 * with TEST_DATABASE_URL), with two owners standing for two processes: a periodic job is
 * claimed once per period, and one sync per mailbox holds its lease. The multi-process test
 * (processes.test.ts) runs them in real worker processes.
 */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A job's period and a sync lease in these tests. Whatever must happen inside one (the claims
 * that lose to it) runs right after it starts, and must land before it ends: 2 s leaves a loaded
 * 2-core host room, where a 400 ms period or a 150 ms lease failed the test whenever one query
 * took that long. Their end is polled for, not slept through.
 */
const PERIOD_MS = 2_000;
/** Date.now() counts whole milliseconds; the database's clock_timestamp() micro-seconds. */
const CLOCK_GRAIN_MS = 2;

async function mailboxId(): Promise<string> {
  const run = (query: ReturnType<typeof sql>) => database.db.execute(query) as unknown as Promise<{ rows: { id: string }[] }>;
  const [workspace] = (await run(sql`insert into workspaces (name) values ('leases') returning id`)).rows;
  const [user] = (await run(sql`insert into users (email, password_hash) values (${`lease-${crypto.randomUUID()}@example.com`}, 'x') returning id`)).rows;
  const [mailbox] = (
    await run(sql`insert into mailboxes (workspace_id, user_id, email, kind, scopes, disclosure_version, refresh_token_enc, daily_budget)
      values (${workspace!.id}, ${user!.id}, 'box@example.com', 'workspace', '{}', 'v', 'x', 100) returning id`)
  ).rows;
  return mailbox!.id;
}

describe('job schedule', () => {
  it('gives each period of a job to one process only', async () => {
    const a = createJobSchedule(database.db, 'process-a');
    const b = createJobSchedule(database.db, 'process-b');
    const started = Date.now();
    const claims = await Promise.all([a.claim('job-x', PERIOD_MS), b.claim('job-x', PERIOD_MS), a.claim('job-x', PERIOD_MS), b.claim('job-x', PERIOD_MS)]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await b.claim('job-x', PERIOD_MS)).toBe(false);
    // The next period is b's once it starts; the claim that takes it sets an hour-long one, which a's
    // claim right after falls inside however slowly the host answers.
    await until(() => b.claim('job-x', 3_600_000), 'the next period is claimed');
    expect(Date.now() - started).toBeGreaterThanOrEqual(PERIOD_MS - CLOCK_GRAIN_MS);
    expect(await a.claim('job-x', 3_600_000)).toBe(false);
    // Other jobs are claimed on their own.
    expect(await a.claim('job-y', 400)).toBe(true);
    const rows = (await database.db.execute(sql`select name, run_count, last_owner from job_schedule where name like 'job-_' order by name`)) as unknown as {
      rows: { name: string; run_count: number; last_owner: string }[];
    };
    expect(rows.rows.map((r) => [r.name, Number(r.run_count), r.last_owner])).toEqual([
      ['job-x', 2, 'process-b'],
      ['job-y', 1, 'process-a'],
    ]);
  });
});

describe('sync leases', () => {
  it('let one process sync a mailbox at a time, and hand a request made meanwhile to the holder', async () => {
    const id = await mailboxId();
    const a = createSyncLeases(database.db, 'process-a');
    const b = createSyncLeases(database.db, 'process-b');
    expect(await a.acquire(id)).toBe(true);
    expect(await b.acquire(id)).toBe(false);
    await sleep(5); // the request is strictly after the holder's start
    await b.request(id);
    // The holder is told to sync once more before it lets go.
    expect(await a.release(id)).toBe(true);
    expect(await a.acquire(id)).toBe(true);
    expect(await a.release(id)).toBe(false);
    expect(await b.acquire(id)).toBe(true);
    expect(await a.renew(id)).toBe(false);
    expect(await b.renew(id)).toBe(true);
    await b.releaseAll();
    expect(await a.acquire(id)).toBe(true);
  });

  it('expire, so a process that died does not hold a mailbox forever', async () => {
    const id = await mailboxId();
    const dead = createSyncLeases(database.db, 'process-dead', PERIOD_MS);
    const alive = createSyncLeases(database.db, 'process-alive', PERIOD_MS);
    const started = Date.now();
    expect(await dead.acquire(id)).toBe(true);
    expect(await alive.acquire(id)).toBe(false);
    await until(() => alive.acquire(id), 'the dead process\'s lease expires');
    expect(Date.now() - started).toBeGreaterThanOrEqual(PERIOD_MS - CLOCK_GRAIN_MS);
    expect(await dead.renew(id)).toBe(false);
  });

  it('refuses a mailbox that does not exist', async () => {
    expect(await createSyncLeases(database.db, 'p').acquire(crypto.randomUUID())).toBe(false);
  });
});
