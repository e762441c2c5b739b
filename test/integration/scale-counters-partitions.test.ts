import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { readSendCounts, recountSendsFromLedger } from '../../src/campaigns/send-counts.repo.js';
import { trackingPartitions } from '../../src/tracking/partitions.js';
import { eventColumnsOf } from '../../src/tracking/event-columns.js';
import { writeEvents } from '../../src/tracking/events.repo.js';
import { rollUpPending } from '../../src/tracking/rollups.repo.js';
import { truncateRawTrackingFacts } from '../../src/tracking/retention.js';
import type { TrackingEventRow } from '../../src/tracking/tracking.repo.js';
import { seededRandom } from '../helpers/campaign-fixtures.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Issue 14: per-campaign send counters kept by the ledger's own statements, and
 * tracking_events partitioned by month with a default partition.
 */

const ctx = useAppWithOwner();
const db = () => ctx.app.database.db;
const singleConnection = () => ctx.app.database.kind === 'pglite';
const rowsOf = <T>(result: unknown) => (result as { rows: T[] }).rows;
const STATES = ['queued', 'sending', 'sent', 'failed', 'skipped'] as const;

describe('send counters (campaign_send_counts)', () => {
  // First, right after sign-up: the app's HTTP connection is fresh (a long pause before it risks a keep-alive reset).
  it('serve the campaign progress and stats through the API', async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 5, links: 1 });
    await db().execute(sql`update campaign_sends set status = 'failed' where id = ${seeded.sends[0]!.id}`);
    const stats = await ctx.app.api('GET', `/api/campaigns/${seeded.campaignId}/stats`, { token: ctx.owner.token });
    expect(stats.status).toBe(200);
    expect(stats.body).toMatchObject({ sent: 4, failed: 1 });
    const campaign = await ctx.app.api('GET', `/api/campaigns/${seeded.campaignId}`, { token: ctx.owner.token });
    expect(campaign.status).toBe(200);
    expect(campaign.body.progress).toMatchObject({ queued: 0, sending: 0, sent: 4, failed: 1, skipped: 0 });
  });

  it('equal a recount of the ledger after inserts, state changes, skips, a rollback and deletes; go with their campaign', async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 40, steps: 2, links: 1 });
    const ids = seeded.sends.map((s) => s.id);
    const rand = seededRandom(14);
    const pick = (n: number) => Array.from({ length: n }, () => ids[Math.floor(rand() * ids.length)]!);
    const idList = (list: string[]) => sql.join(list.map((id) => sql`${id}::uuid`), sql`, `);

    await db().execute(sql`update campaign_sends set status = 'queued', sent_at = null where id in (${idList(pick(30))})`);
    await db().execute(sql`update campaign_sends set status = 'sending' where id in (${idList(pick(10))})`);
    await db().execute(sql`update campaign_sends set status = 'failed', error_code = 'x' where id in (${idList(pick(5))})`);
    await db().execute(sql`update campaign_sends set status = 'skipped', skip_reason = 'suppressed' where id in (${idList(pick(6))})`);
    await db().execute(sql`update campaign_sends set status = 'skipped', skip_reason = 'no_consent' where id in (${idList(pick(4))})`);
    // A statement that changes no state (a lease renewal) changes no counter.
    await db().execute(sql`update campaign_sends set attempts = attempts + 1 where campaign_id = ${seeded.campaignId}`);
    // A rolled-back change leaves the counters as they were.
    await expect(
      db().transaction(async (tx) => {
        await tx.execute(sql`update campaign_sends set status = 'sent' where campaign_id = ${seeded.campaignId}`);
        throw new Error('rolled back on purpose');
      }),
    ).rejects.toThrow('rolled back on purpose');
    await db().execute(sql`delete from campaign_sends where id in (${idList(pick(7))})`);

    const counted = await readSendCounts(db(), seeded.campaignId, ctx.owner.workspaceId);
    const recount = await recountSendsFromLedger(db(), seeded.campaignId, ctx.owner.workspaceId);
    expect(counted).toEqual(recount);
    expect(Object.values(counted.counts).reduce((a, b) => a + b, 0)).toBeGreaterThan(60);
    expect(counted.skippedBecause).toMatchObject({ suppressed: expect.any(Number) });
    expect(await sendCountMismatches(db())).toEqual([]);

    // Deleting the campaign deletes its sends by cascade: the triggers skip it, its counters go with it.
    await db().execute(sql`delete from campaigns where id = ${seeded.campaignId}`);
    const left = rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from campaign_send_counts where campaign_id = ${seeded.campaignId}`));
    expect(Number(left[0]!.n)).toBe(0);
  });

  it('stay equal to the ledger under concurrent writers (one statement per change, from several connections)', async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 60, links: 1 });
    const rand = seededRandom(41);
    const writer = async (w: number) => {
      for (let i = 0; i < 40; i += 1) {
        const send = seeded.sends[(w * 40 + i * 7) % seeded.sends.length]!;
        const status = STATES[Math.floor(rand() * STATES.length)]!;
        await db().execute(sql`
          update campaign_sends set status = ${status}::send_status, skip_reason = ${status === 'skipped' ? 'suppressed' : null}
          where id = ${send.id}`);
      }
    };
    await Promise.all([0, 1, 2, 3, 4].map(writer));
    expect(await readSendCounts(db(), seeded.campaignId)).toEqual(await recountSendsFromLedger(db(), seeded.campaignId));
    expect(await sendCountMismatches(db())).toEqual([]);
  });

});

describe('stats reads that could grow with the workspace', () => {
  it("the campaign's unsubscribe count probes its index, not the workspace's 100,000 suppressions (EXPLAIN ANALYZE)", async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 1, links: 1 });
    await db().execute(sql`
      insert into suppressions (workspace_id, email, reason, source)
      select ${ctx.owner.workspaceId}, 'gone' || i || '@contoso.test', case when i % 3 = 0 then 'bounce' else 'unsubscribe' end::suppression_reason,
             case when i % 1000 = 0 then ${`campaign:${seeded.campaignId}`} else 'campaign:' || gen_random_uuid() end
      from generate_series(1, 100000) i`);
    await db().execute(sql`analyze suppressions`);
    const plan = rowsOf<Record<string, string>>(
      await db().execute(sql`
        explain (analyze, buffers) select count(distinct lower(email))::int as n from suppressions
        where workspace_id = ${ctx.owner.workspaceId} and reason = 'unsubscribe' and source = ${`campaign:${seeded.campaignId}`}`),
    )
      .map((r) => Object.values(r)[0])
      .join('\n');
    expect(plan).toMatch(/Index Scan using suppressions_unsubscribe_source_idx|Bitmap Index Scan on suppressions_unsubscribe_source_idx/);
    expect(plan).not.toMatch(/Seq Scan on suppressions/);
    const auth = { workspaceId: ctx.owner.workspaceId, userId: ctx.owner.workspaceId, role: 'owner' } as const;
    // Every thousandth address names this campaign; a third of those are bounces, not opt-outs.
    expect((await ctx.app.services.tracking.stats.campaignStats(auth, seeded.campaignId)).unsubscribed).toBe(67);
  }, 120_000);
});

describe('tracking_events partitioned by month', () => {
  const event = (workspaceId: string, campaignId: string, sendId: string, at: Date, overrides: Partial<TrackingEventRow> = {}): TrackingEventRow => ({
    id: randomUUID(),
    workspaceId,
    campaignId,
    sendId,
    type: 'open',
    linkIndex: null,
    atMs: at.getTime(),
    method: 'GET',
    ip: '203.0.113.9',
    userAgent: 'Mozilla/5.0',
    classification: 'machine',
    reasons: ['test'],
    ...overrides,
  });
  const partitionOf = async (id: string) =>
    rowsOf<{ part: string }>(await db().execute(sql`select tableoid::regclass::text as part from tracking_events where id = ${id}`)).map((r) => r.part);

  it('the current month and the two after it exist from the start, beside the default partition; the job creates months ahead', async () => {
    const now = new Date();
    const month = (offset: number) => {
      const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
      return `tracking_events_p${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
    };
    const before = await trackingPartitions(db());
    expect(before).toEqual(expect.arrayContaining([month(0), month(1), month(2), 'tracking_events_default']));

    // The scheduled job's call, as if run in March 2040: three months created, then nothing more to do.
    expect(await ctx.app.services.tracking.ensurePartitions(new Date('2040-03-15T12:00:00Z'))).toBe(3);
    expect(await ctx.app.services.tracking.ensurePartitions(new Date('2040-03-20T12:00:00Z'))).toBe(0);
    expect(await trackingPartitions(db())).toEqual(expect.arrayContaining(['tracking_events_p2040_03', 'tracking_events_p2040_04', 'tracking_events_p2040_05']));
  });

  it('an event beyond every partition lands in the default one, moves into its month when that is created; the same event twice counts once', async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 1, links: 1 });
    const send = seeded.sends[0]!.id;
    const at = new Date('2035-07-04T10:00:00.123Z');
    const hit = event(ctx.owner.workspaceId, seeded.campaignId, send, at);
    const options = { singleConnection: singleConnection() };

    expect(await writeEvents(db(), eventColumnsOf([hit]))).toBe(1);
    expect(await writeEvents(db(), eventColumnsOf([hit]))).toBe(0);
    expect(await partitionOf(hit.id)).toEqual(['tracking_events_default']);

    expect(await ctx.app.services.tracking.ensurePartitions(new Date('2035-07-01T00:00:00Z'))).toBe(3);
    expect(await partitionOf(hit.id)).toEqual(['tracking_events_p2035_07']);
    // Retried after the move (a lost acknowledgement): still one row, nothing new counted.
    expect(await writeEvents(db(), eventColumnsOf([hit]))).toBe(0);
    expect(await partitionOf(hit.id)).toEqual(['tracking_events_p2035_07']);
    await rollUpPending(db(), options);
    const rollup = rowsOf<{ machine: number }>(await db().execute(sql`select machine::int as machine from tracking_rollups where campaign_id = ${seeded.campaignId} and type = 'open' and link_index = -1`));
    expect(Number(rollup[0]!.machine)).toBe(1);
  });

  it('P-14 the retention sweep reads only past-window months through the raw-facts index (EXPLAIN ANALYZE at 100k events)', async () => {
    const seeded = await seedSentCampaign(db(), ctx.owner.workspaceId, { recipients: 50, links: 1 });
    const now = new Date('2041-06-20T00:00:00Z');
    await ctx.app.services.tracking.ensurePartitions(new Date('2041-02-01T00:00:00Z'));
    await ctx.app.services.tracking.ensurePartitions(new Date('2041-05-01T00:00:00Z'));
    const sendIds = sql.raw(`array[${seeded.sends.map((s) => `'${s.id}'::uuid`).join(',')}]`);
    // 100,000 events over February–June 2041; those more than 37 days before `now` were swept already (no UA, IP cut).
    await db().execute(sql`
      insert into tracking_events (id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons)
      select gen_random_uuid(), ${ctx.owner.workspaceId}, ${seeded.campaignId}, (${sendIds})[1 + i % 50], 'open', null, t, 'GET',
             case when t < ${now.toISOString()}::timestamptz - interval '37 days' then '203.0.113.0/24' else '203.0.113.9' end,
             case when t < ${now.toISOString()}::timestamptz - interval '37 days' then null else 'Mozilla/5.0' end,
             'machine', '{test}'
      from (select i, timestamptz '2041-02-01 00:00:00Z' + (i * interval '1 minute') * 1.98 as t from generate_series(1, 100000) i) g`);
    await db().execute(sql`analyze tracking_events`);
    const cutoff = new Date(now.getTime() - 30 * 86_400_000).toISOString();
    const plan = rowsOf<Record<string, string>>(
      await db().execute(sql`
        explain (analyze, buffers) select id, at from tracking_events
        where at < ${cutoff}::timestamptz and (user_agent is not null or (ip is not null and position('/' in ip) = 0)) limit 5000`),
    )
      .map((r) => Object.values(r)[0])
      .join('\n');
    // The months after the cutoff are pruned; the others are read through their partial index.
    expect(plan).not.toMatch(/tracking_events_p2041_06/);
    expect(plan).not.toMatch(/Seq Scan on tracking_events_p2041/);
    expect(plan).toMatch(/Index (Only )?Scan using tracking_events_p2041_05_at_idx|Bitmap Index Scan on tracking_events_p2041_05_at_idx/);

    const pending = rowsOf<{ n: number }>(
      await db().execute(sql`select count(*)::int as n from tracking_events where at < ${cutoff}::timestamptz and user_agent is not null`),
    );
    // Every event in the database past the window (other tests' too): the sweep is not per campaign.
    expect(Number(pending[0]!.n)).toBeGreaterThan(5_000);
    expect(await truncateRawTrackingFacts(db(), { now, retentionDays: 30, batchSize: 1_000 })).toBe(Number(pending[0]!.n));
    const after = rowsOf<{ n: number }>(
      await db().execute(sql`select count(*)::int as n from tracking_events where at < ${cutoff}::timestamptz and (user_agent is not null or position('/' in ip) = 0)`),
    );
    expect(Number(after[0]!.n)).toBe(0);
  }, 120_000);
});
