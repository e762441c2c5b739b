import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { TaskThread } from '../../src/db/task-thread.js';
import type { WorkerPort } from '../../src/db/worker-port.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { eventColumnsOf } from '../../src/tracking/event-columns.js';
import { createTrackingRepo } from '../../src/tracking/tracking.repo.js';
import { seededRandom } from '../helpers/campaign-fixtures.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { createTestDatabase } from '../helpers/test-db.js';
import { randomTrackingEvents } from '../helpers/tracking-events.js';

/*
 * Issue 14: the tracking writer's statement and the rollup pass run on a database thread
 * (src/db/database-thread-tasks.ts: PGlite's own thread, or a server's task thread with its
 * own pool), so the answering thread's heap carries none of it. They must do there exactly what they do in-process: the same rows, the
 * same rollups, the same "a retried batch is not written twice", and an error that crosses
 * back carries the database's code but never the statement's parameters.
 */

let database: Database;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

const count = async (query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await database.db.execute(query))[0]!.n);

describe('tasks on a database thread', () => {
  it('write events and roll them up as in-process; a retried batch lands once; rollups equal those of the same events rolled up in-process', async () => {
    expect(database.runTask).toBeTypeOf('function');
    const workspaceId = String(rowsOf<{ id: string }>(await database.db.execute(sql`insert into workspaces (name) values ('Tasks') returning id`))[0]!.id);
    const [onThread, inProcess] = [
      await seedSentCampaign(database.db, workspaceId, { recipients: 20, steps: 2, links: 3 }),
      await seedSentCampaign(database.db, workspaceId, { recipients: 20, steps: 2, links: 3 }),
    ];
    const rand = seededRandom(7);
    const events = randomTrackingEvents(rand, workspaceId, onThread, 600, Date.UTC(2026, 10, 3));
    // The same events on the other campaign's sends (same positions), for the in-process pass.
    const sendIndex = new Map(onThread.sends.map((s, i) => [s.id, i]));
    const twins = events.map((e) => ({ ...e, id: crypto.randomUUID(), campaignId: inProcess.campaignId, sendId: inProcess.sends[sendIndex.get(e.sendId)!]!.id }));

    expect(await database.runTask!('writeEvents', { events: eventColumnsOf(events) })).toBe(600);
    // The acknowledgement was lost and the batch is retried: the same ids change nothing.
    expect(await database.runTask!('writeEvents', { events: eventColumnsOf(events) })).toBe(0);
    expect(await count(sql`select count(*)::int as n from tracking_events where campaign_id = ${onThread.campaignId}`)).toBe(600);

    let counted = 0;
    for (let result = await database.runTask!('rollUpPending', { maxEvents: 250 }); result.records > 0; result = await database.runTask!('rollUpPending', { maxEvents: 250 })) {
      counted += result.events;
    }
    expect(counted).toBe(600);

    // The twins written and rolled up on this thread, in-process.
    const repo = createTrackingRepo(database.db, { singleConnection: database.kind === 'pglite' });
    expect(await repo.insertEvents(twins)).toBe(600);
    counted = 0;
    for (let result = await repo.rollUpPending(250); result.records > 0; result = await repo.rollUpPending(250)) counted += result.events;
    expect(counted).toBe(600);

    const rollups = async (campaignId: string) =>
      rowsOf<Record<string, unknown>>(
        await database.db.execute(sql`select type::text, link_index, human::int, machine::int, unknown::int, unique_human::int from tracking_rollups where campaign_id = ${campaignId} order by 1, 2`),
      );
    const ours = await rollups(onThread.campaignId);
    expect(ours.length).toBeGreaterThan(2);
    expect(ours).toEqual(await rollups(inProcess.campaignId));
  });

  it('an error from a task carries the database’s code and message, never the parameters', async () => {
    const workspaceId = String(rowsOf<{ id: string }>(await database.db.execute(sql`insert into workspaces (name) values ('Errors') returning id`))[0]!.id);
    const seeded = await seedSentCampaign(database.db, workspaceId, { recipients: 2 });
    const [event] = randomTrackingEvents(seededRandom(1), workspaceId, seeded, 1, Date.UTC(2026, 10, 3));
    const secretAgent = 'Mozilla/5.0 secret-agent-value';
    const bad = { ...event!, userAgent: secretAgent, ip: '198.51.100.77', classification: 'not-a-verdict' as never };
    const error = (await database.runTask!('writeEvents', { events: eventColumnsOf([bad]) }).then(
      () => expect.fail('an unknown verdict must be refused') as never,
      (e: unknown) => e,
    )) as Error & { code?: string };
    expect(error.code).toBe('22P02'); // invalid input value for enum hit_classification
    const everything = JSON.stringify({ ...error, message: error.message, stack: error.stack });
    expect(everything).not.toContain('secret-agent-value');
    expect(everything).not.toContain('198.51.100.77');
    expect(await count(sql`select count(*)::int as n from tracking_events where campaign_id = ${seeded.campaignId}`)).toBe(0);
  });

  it.runIf(process.env.TEST_DATABASE_URL)('a server’s task thread starts on its first task, starts again after it died, and refuses tasks once closed', async () => {
    const url = (database as { url?: string }).url!;
    const thread = new TaskThread({ url, poolSize: 1 });
    const port = () => (thread as unknown as { port?: Promise<WorkerPort> }).port;
    expect(port()).toBeUndefined(); // nothing started before a task
    expect(await thread.runTask('rollUpPending', {})).toMatchObject({ records: 0 });
    const first = await port()!;
    await first.worker.terminate(); // the thread dies (as if it crashed)
    expect(await thread.runTask('rollUpPending', {})).toMatchObject({ records: 0 });
    expect(await port()!).not.toBe(first);
    await thread.close();
    await expect(thread.runTask('rollUpPending', {})).rejects.toThrow(/closed/);
  });

  it('a driver error from a task thread keeps its code and reason (a refused connection), and no parameters', async () => {
    const thread = new TaskThread({ url: 'postgres://postgres@127.0.0.1:1/nowhere', poolSize: 1, connectTimeoutMs: 500 });
    try {
      const [event] = randomTrackingEvents(seededRandom(2), crypto.randomUUID(), { campaignId: crypto.randomUUID(), sends: [{ id: crypto.randomUUID() }], links: 0 } as never, 1, Date.UTC(2026, 10, 3));
      const error = (await thread.runTask('writeEvents', { events: eventColumnsOf([{ ...event!, ip: '198.51.100.77' }]) }).then(
        () => expect.fail('nothing listens on port 1') as never,
        (e: unknown) => e,
      )) as Error & { code?: string };
      expect(error.code).toBe('ECONNREFUSED');
      expect(error.message).toMatch(/ECONNREFUSED/);
      expect(JSON.stringify({ ...error, message: error.message })).not.toContain('198.51.100.77');
    } finally {
      await thread.close();
    }
  });
});
