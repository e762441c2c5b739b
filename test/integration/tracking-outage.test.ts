import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthContext } from '../../src/auth/auth.service.js';
import { connect, type Database } from '../../src/db/connect.js';
import { createStatsRepo } from '../../src/tracking/stats.repo.js';
import { createStatsService } from '../../src/tracking/stats.service.js';
import { findPostgresBinaries, startPrivatePostgres, type PrivatePostgres } from '../helpers/private-postgres.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Issue 8 item 5, "Database outage and partition": a private PostgreSQL cluster (never the
 * shared server) behind a TCP proxy that cuts connections, stalls the answers of a hung
 * server, and loses the acknowledgement of a commit that landed. The pixel and the click
 * keep answering; afterwards the events in the table equal the hits answered minus the
 * ones the metric says were dropped — not one more — and the stats rollups equal a recount.
 */

const bin = findPostgresBinaries();
if (!bin) console.warn('tracking-outage: skipped — no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin');

describe.skipIf(!bin)('tracking through a database outage and partition (private cluster, TCP proxy)', () => {
  let cluster: PrivatePostgres;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let direct: Database;
  let throughProxy: Database | undefined;
  let app: TestApp;

  beforeAll(async () => {
    cluster = await startPrivatePostgres(bin!);
    const admin = await connect({ kind: 'postgres', url: cluster.url, poolSize: 1 });
    await admin.db.execute(sql`create database outage`);
    await admin.close();
    const url = cluster.url.replace(/\/postgres$/, '/outage');
    direct = await connect({ kind: 'postgres', url, poolSize: 2 });
    await direct.migrate();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: cluster.port });
    throughProxy = await connect({ kind: 'postgres', url: `postgres://postgres@127.0.0.1:${proxy.port}/outage`, poolSize: 5, connectTimeoutMs: 500, statementTimeoutMs: 1_000 });
    app = await startTestApp({ database: throughProxy, env: { TRACKING_BUFFER_MAX: '1000', TRACKING_CLICK_TIMEOUT_MS: '800' } });
  }, 120_000);

  afterAll(async () => {
    // Bounded, as main.ts's hard exit bounds a real shutdown: in 2 of 8 runs on this machine (on
    // `311d7ed` too) a close here never settled after the partition and timed the hook out
    // (seen in the fourteenth pass of issue 14; not yet explained). The check above is what this
    // file is for; a hung close is reported, not waited on.
    const bounded = async (name: string, closing: Promise<unknown> | undefined) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 10_000)));
      if ((await Promise.race([closing, late])) === 'late') console.warn(`tracking-outage: ${name} did not close within 10 s`);
      clearTimeout(timer);
    };
    await bounded('the app', app?.close());
    await bounded('the database through the proxy', throughProxy?.close()); // the app does not close a database it was given
    await direct?.close();
    await proxy?.close();
    cluster?.stop();
  }, 60_000);

  it('pixel and click keep answering; events equal hits answered minus the counted drops, not one more', async () => {
    const owner = await signUp(app);
    const tracking = app.services.tracking;
    const warm = await seedSentCampaign(direct.db, owner.workspaceId, { recipients: 60 });
    const cold = await seedSentCampaign(direct.db, owner.workspaceId, { recipients: 3 });
    const path = (url: string) => new URL(url).pathname;
    let answered = 0;
    const hit = async (url: string) => {
      const started = performance.now();
      const res = await fetch(`${app.baseUrl}${path(url)}`, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0' } });
      await res.arrayBuffer();
      const ms = performance.now() - started;
      if (res.status === 200 || res.status === 302) answered += 1;
      return { status: res.status, ms, location: res.headers.get('location') };
    };
    const pixels = async (count: number) => {
      let slowest = 0;
      for (let i = 0; i < count; i += 50) {
        const results = await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, j) => hit(tracking.urls.openPixel(warm.sends[(i + j) % warm.sends.length]!.id))));
        for (const r of results) {
          expect(r.status).toBe(200);
          slowest = Math.max(slowest, r.ms);
        }
      }
      return slowest;
    };

    // Database up: a click on one send of the campaign; its whole send list is then held.
    expect(await hit(tracking.urls.click(warm.sends[0]!.id, 0))).toMatchObject({ status: 302, location: warm.urls[0] });
    for (let i = 0; i < 50 && tracking.cache.indexedSends < warm.sends.length; i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(tracking.cache.indexedSends).toBeGreaterThanOrEqual(warm.sends.length);
    await pixels(100);
    expect(await tracking.flush()).toBe(0);

    // Partition: every connection reset, new ones refused. More hits than the buffer holds.
    proxy.set('cut');
    expect(await pixels(1_100)).toBeLessThan(1_000);
    for (let i = 1; i <= 5; i += 1) {
      // Sends never clicked before, of a campaign held: redirected without the database.
      const res = await hit(tracking.urls.click(warm.sends[i]!.id, i % 3));
      expect(res).toMatchObject({ status: 302, location: warm.urls[i % 3] });
      expect(res.ms).toBeLessThan(1_000);
    }
    // A campaign never seen: 503 within a second, never a guess.
    const cold503 = await hit(tracking.urls.click(cold.sends[0]!.id, 0));
    expect(cold503.status).toBe(503);
    expect(cold503.ms).toBeLessThan(1_000);

    // Back, but slow and then dropping: the commit lands and its answer never comes back.
    proxy.set('pass');
    proxy.set('stall-after-commit');
    const stalledAt = performance.now();
    expect(await tracking.flush()).toBeGreaterThan(0); // not acknowledged: kept, not counted as written
    expect(performance.now() - stalledAt).toBeLessThan(5_000);
    expect(proxy.commitsStalled).toBe(1);
    // The database hangs: uncached clicks still answer within a second.
    const hung = await hit(tracking.urls.click(cold.sends[1]!.id, 0));
    expect(hung.status).toBe(503);
    expect(hung.ms).toBeLessThan(1_000);
    expect(await pixels(1)).toBeLessThan(1_000);
    proxy.set('cut');

    // Healed: everything still buffered is written, the batch that had landed is skipped by id.
    proxy.set('pass');
    for (let i = 0; i < 60 && (await tracking.flush()) > 0; i += 1) await new Promise((r) => setTimeout(r, 250));
    expect(tracking.pending()).toBe(0);

    const metrics = await app.api('GET', '/metrics');
    const metric = (pattern: RegExp) => Number(pattern.exec(metrics.text)?.[1] ?? 0);
    const dropped = metric(/^tracking_events_dropped_total\{reason="buffer_full"\} (\d+)/m);
    const alreadyWritten = metric(/^tracking_events_already_written_total (\d+)/m);
    expect(dropped).toBeGreaterThan(0);
    expect(alreadyWritten).toBeGreaterThan(0);
    expect(metric(/^tracking_clicks_without_database_total\{answer="unavailable"\} (\d+)/m)).toBe(2);

    const rows = (await direct.db.execute(sql`select count(*)::int as n, count(distinct id)::int as ids from tracking_events`)) as unknown as { rows: { n: number; ids: number }[] };
    expect(Number(rows.rows[0]!.n)).toBe(answered - dropped);
    expect(Number(rows.rows[0]!.ids)).toBe(Number(rows.rows[0]!.n));

    // The rollups counted each stored event once.
    const auth: AuthContext = { workspaceId: owner.workspaceId, userId: owner.userId, role: 'owner' };
    const repo = createStatsRepo(direct.db);
    const fromRollups = await createStatsService({ repo }).campaignStats(auth, warm.campaignId);
    expect(fromRollups).toEqual(await createStatsService({ repo: { ...repo, eventCounts: repo.eventCountsFromEvents } }).campaignStats(auth, warm.campaignId));
    expect(fromRollups.opens.human + fromRollups.clicks.human + fromRollups.opens.machine + fromRollups.clicks.machine + fromRollups.opens.unknown + fromRollups.clicks.unknown).toBe(answered - dropped);
  }, 120_000);
});
