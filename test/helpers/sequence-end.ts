import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { readSendCounts, recountSendsFromLedger } from '../../src/campaigns/send-counts.repo.js';
import { campaignFixtures, crashingWorker, separateWorker } from './campaign-fixtures.js';
import type { TestApp } from './test-app.js';

/*
 * What the tests of a sequence ending early share (reply-ends-sequence: a person's reply;
 * suppression-ends-sequence: a hard bounce, an opt-out): a campaign's follow-ups and progress,
 * the counters against the ledger, copies received, and a worker sending both steps while
 * something ends sequences beside it, checked on a server against its deadlock count.
 */
export function sequenceEndChecks(ctx: { app: TestApp; owner: { token: string; workspaceId: string } }) {
  const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
  const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;

  /** The campaign's step-1 rows, by address. */
  const followUps = (campaignId: string) =>
    query<{ email: string; status: string; skip_reason: string | null; due_at: Date }>(
      sql`select email, status::text as status, skip_reason, due_at from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1 order by email`,
    );

  async function campaign(campaignId: string) {
    const res = await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token });
    expect(res.status, res.text).toBe(200);
    return res.body as { status: string; completedAt: string | null; progress: { queued: number; sending: number; skipped: number; sent: number; skippedBecause: Record<string, number>; nextSendAt: string | null } };
  }

  /** The counters (what progress shows) equal a recount of the ledger. */
  async function expectCountersRight(campaignId: string) {
    const db = ctx.app.database.db;
    expect(await readSendCounts(db, campaignId)).toEqual(await recountSendsFromLedger(db, campaignId));
  }

  const copiesReceived = (person: { email: string }, subject: string) => ctx.app.sandbox.control.listMessages(person.email).filter((m) => m.subject.includes(subject)).length;

  /** Deadlocks the server has detected in the test's database so far (its cumulative statistics, read fresh). */
  async function deadlocks(): Promise<number> {
    await query(sql`select pg_stat_clear_snapshot()`);
    const [row] = await query<{ n: number }>(sql`select deadlocks::int as n from pg_stat_database where datname = current_database()`);
    return row!.n;
  }

  /**
   * A worker sends the campaign in rounds of four until nothing is queued, while `beside` runs
   * (told whether the worker is still sending); then `settle` (a last sync, say) and one more
   * tick, and the follow-ups are all `sent` or `skipped` with `reason`, the campaign completed,
   * the counters right and, on a server, no deadlock detected. Returns the follow-ups.
   * `worker.batchSize` caps what one tick reserves; `afterFirstTick` runs before the worker goes on
   * (so that something is sure to happen beside it between two ticks, whatever the scheduler does).
   */
  async function sendBeside(
    campaignId: string,
    reason: string,
    beside: (sending: () => boolean) => Promise<void>,
    settle?: () => Promise<unknown>,
    options: { batchSize?: number; afterFirstTick?: () => Promise<void> } = {},
  ) {
    const onServer = Boolean(process.env.TEST_DATABASE_URL);
    const before = onServer ? await deadlocks() : 0;
    const worker = separateWorker(ctx.app, { concurrency: 4, ...(options.batchSize ? { batchSize: options.batchSize } : {}) });
    let sending = true;
    const sends = (async () => {
      try {
        for (let i = 0; i < 200; i += 1) {
          const sent = await worker.tick();
          if (i === 0) await options.afterFirstTick?.();
          if (sent + (await fx.ledger(campaignId)).filter((r) => r.status === 'queued').length === 0) break;
        }
      } finally {
        sending = false;
      }
    })();
    await Promise.all([sends, beside(() => sending)]);
    await settle?.();
    await separateWorker(ctx.app, { concurrency: 4 }).tick();
    const steps = await followUps(campaignId);
    for (const row of steps) expect([['sent', null], ['skipped', reason]]).toContainEqual([row.status, row.skip_reason]);
    expect((await campaign(campaignId)).status).toBe('completed');
    await expectCountersRight(campaignId);
    if (onServer) {
      await new Promise((r) => setTimeout(r, 1_500)); // backends flush their statistics at most once a second
      expect(await deadlocks(), 'deadlocks the server detected').toBe(before);
    }
    return steps;
  }

  /**
   * Step 0 of a one-person campaign accepted by Gmail by a worker that then died, `meanwhile`
   * recorded while it awaits recovery, then recovery (which writes the follow-up): the follow-up
   * is `skipped` with `reason`, and the campaign completes after one more tick, one copy sent.
   */
  async function recoveredAfter(campaignId: string, person: { email: string }, subject: string, reason: string, meanwhile: () => Promise<unknown>) {
    await crashingWorker(ctx.app, 1_500).tick();
    expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sending']);
    await meanwhile();
    await new Promise((r) => setTimeout(r, 1_800));
    expect(await ctx.app.services.sendWorker.recoverStuck()).toBe(1);
    expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', reason]]);
    await separateWorker(ctx.app, { concurrency: 1 }).tick();
    expect((await campaign(campaignId)).status).toBe('completed');
    await expectCountersRight(campaignId);
    expect(copiesReceived(person, subject)).toBe(1);
  }

  return { fx, query, followUps, campaign, expectCountersRight, copiesReceived, deadlocks, sendBeside, recoveredAfter };
}
