import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import type { AuthContext } from '../../src/auth/auth.service.js';
import type { Classification } from '../../src/tracking/classify.js';
import { createStatsRepo } from '../../src/tracking/stats.repo.js';
import { createStatsService } from '../../src/tracking/stats.service.js';
import { createTrackingRepo, type TrackingEventRow } from '../../src/tracking/tracking.repo.js';
import { seededRandom } from '../helpers/campaign-fixtures.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { randomTrackingEvents } from '../helpers/tracking-events.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Issue 14: campaign stats are read from rollups the event writer keeps, and must always
 * equal a recount over the raw events — with batches that arrive out of time order, are
 * retried after landing (same ids), run concurrently, and move the human-click upgrade
 * back and forth. Seeded, so a failure replays.
 */

const ctx = useAppWithOwner();
const db = () => ctx.app.database.db;

const prng = seededRandom;

const seed = (workspaceId: string, recipientCount: number, steps: number, links: number) => seedSentCampaign(db(), workspaceId, { recipients: recipientCount, steps, links });

const randomEvents = (rand: () => number, workspaceId: string, seeded: Awaited<ReturnType<typeof seed>>, count: number) =>
  randomTrackingEvents(rand, workspaceId, seeded, count, Date.UTC(2026, 10, 1));

function shuffle<T>(rand: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** Rollup passes until nothing is pending. */
async function drain(repo: ReturnType<typeof createTrackingRepo>) {
  while ((await repo.rollUpPending()).records > 0);
}

describe('campaign stats rollups', () => {
  it('equal a raw recount after a seeded random mix of hits: out of order, retried, concurrent', async () => {
    const workspaceId = ctx.owner.workspaceId;
    const auth = { workspaceId, userId: ctx.owner.userId, role: 'owner' } as AuthContext;
    const repo = createTrackingRepo(db(), { singleConnection: ctx.app.database.kind === 'pglite' });
    const statsRepo = createStatsRepo(db());
    const fromRollups = createStatsService({ repo: statsRepo });
    const fromEvents = createStatsService({ repo: { ...statsRepo, eventCounts: statsRepo.eventCountsFromEvents } });

    for (const seedValue of [1, 2, 3]) {
      const rand = prng(seedValue);
      const seeded = await seed(workspaceId, 12, 2, 3);
      const events = shuffle(rand, randomEvents(rand, workspaceId, seeded, 600));
      // Batches of random size, two writers at once; now and then a batch is sent again
      // (its acknowledgement was "lost"), whole or overlapping the next one.
      const batches: TrackingEventRow[][] = [];
      for (let at = 0; at < events.length; ) {
        const size = 1 + Math.floor(rand() * 60);
        batches.push(events.slice(at, at + size));
        at += size;
        if (rand() < 0.3) batches.push(events.slice(Math.max(0, at - size - 5), at + 5));
      }
      // Rollup passes run beside the writers (several at once on a server) and, before each
      // comparison, until nothing is pending: the stats follow the events by one pass.
      const pass = () => repo.rollUpPending(1 + Math.floor(rand() * 150));
      for (let i = 0; i < batches.length; i += 2) {
        await Promise.all([...batches.slice(i, i + 2).map((batch) => repo.insertEvents(batch)), ...(rand() < 0.5 ? [pass(), pass()] : [])]);
        if (i % 10 === 0) {
          await drain(repo);
          expect(await fromRollups.campaignStats(auth, seeded.campaignId), `seed ${seedValue}, batch ${i}`).toEqual(await fromEvents.campaignStats(auth, seeded.campaignId));
        }
      }
      await drain(repo);
      const result = (await db().execute(sql`select count(*)::int as n from tracking_events where campaign_id = ${seeded.campaignId}`)) as unknown as { rows: { n: number }[] };
      expect(Number(result.rows[0]!.n)).toBe(events.length);
      const stats = await fromRollups.campaignStats(auth, seeded.campaignId);
      expect(stats).toEqual(await fromEvents.campaignStats(auth, seeded.campaignId));
      // The mix really exercised every count, the upgrade included.
      expect(stats.opens.human + stats.opens.machine + stats.opens.unknown + stats.clicks.human + stats.clicks.machine + stats.clicks.unknown).toBe(events.length);
      expect(stats.opens.uniqueHuman).toBeGreaterThan(0);
      expect(stats.opens.uniqueHuman).toBeLessThanOrEqual(12);
      const upgraded = (await db().execute(sql`select count(*)::int as n from tracking_send_rollups where campaign_id = ${seeded.campaignId} and upgraded_class is not null`)) as unknown as { rows: { n: number }[] };
      expect(Number(upgraded.rows[0]!.n)).toBeGreaterThan(0);
    }
  });

  it('an earlier human click or open arriving late moves the upgrade, and the counts follow', async () => {
    const workspaceId = ctx.owner.workspaceId;
    const auth = { workspaceId, userId: ctx.owner.userId, role: 'owner' } as AuthContext;
    const repo = createTrackingRepo(db(), { singleConnection: ctx.app.database.kind === 'pglite' });
    const stats = createStatsService({ repo: createStatsRepo(db()) });
    const seeded = await seed(workspaceId, 1, 1, 2);
    const send = seeded.sends[0]!.id;
    const t0 = Date.UTC(2026, 10, 2);
    const event = (type: 'open' | 'click', seconds: number, classification: Classification): TrackingEventRow => ({
      id: randomUUID(), workspaceId, campaignId: seeded.campaignId, sendId: send, type, linkIndex: type === 'click' ? 0 : null,
      atMs: t0 + seconds * 1000, method: 'GET', ip: null, userAgent: null, classification, reasons: ['test'],
    });
    const opens = async () => (await stats.campaignStats(auth, seeded.campaignId)).opens;

    await repo.insertEvents([event('open', 10, 'machine'), event('open', 5, 'unknown')]);
    await drain(repo);
    expect(await opens()).toEqual({ human: 0, machine: 1, unknown: 1, uniqueHuman: 0 });
    // A human click at 20 s: the latest earlier open (the machine one at 10 s) counts as human.
    await repo.insertEvents([event('click', 20, 'human')]);
    await drain(repo);
    expect(await opens()).toEqual({ human: 1, machine: 0, unknown: 1, uniqueHuman: 1 });
    // An earlier human click (7 s) arrives late: now the unknown open at 5 s is the one.
    await repo.insertEvents([event('click', 7, 'human')]);
    await drain(repo);
    expect(await opens()).toEqual({ human: 1, machine: 1, unknown: 0, uniqueHuman: 1 });
    // Earlier still (1 s): no open before it, no upgrade, no human open at all.
    await repo.insertEvents([event('click', 1, 'human')]);
    await drain(repo);
    expect(await opens()).toEqual({ human: 0, machine: 1, unknown: 1, uniqueHuman: 0 });
    // A human open at 0.5 s: it is the person's open; nothing else is upgraded.
    await repo.insertEvents([event('open', 0.5, 'human')]);
    await drain(repo);
    expect(await opens()).toEqual({ human: 1, machine: 1, unknown: 1, uniqueHuman: 1 });
  });
});
