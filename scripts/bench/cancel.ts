/**
 * Cancel of a large campaign (issue #14, tenth pass): how long the cancel takes to answer, how
 * long the rest of its queued sends take to be skipped, and the longest a request waits for the
 * database meanwhile — a `select 1` asked every 5 ms through the same database handle (on
 * PGlite, the app's engine on its one database thread, that is how long a tracking hit or any
 * request waits; on a server another connection answers at once).
 *
 *   nice -n 10 npm run bench -- cancel
 *   BENCH_TARGETS=pglite BENCH_CANCEL_SENDS=100000 BENCH_CANCEL_BATCH=5000 npm run bench -- cancel
 *
 * Two identical campaigns, each a sent first step and a queued second step of
 * BENCH_CANCEL_SENDS recipients (as the plan audit's large campaign). "Before" cancels one as
 * `main` did until this pass (its transition and main's one `skipQueued` statement, in one
 * transaction; the statement's text is copied here); "after" cancels the other through the
 * service (`campaigns.cancel`: the transition, then batches for up to CANCEL_INLINE_MS), then
 * runs the worker's sweep until nothing is left. On the server, the cancel "before" runs under
 * the app's default statement timeout (10 s, `set local`); the seeding has none.
 */
import { sql } from 'drizzle-orm';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { CANCEL_INLINE_MS, createCancelledSends, SKIP_BATCH_ROWS } from '../../src/campaigns/cancelled-sends.js';
import { createCancelledSendsRepo, type CancelledSendsRepo } from '../../src/campaigns/cancelled-sends.repo.js';
import type { Db } from '../../src/db/connect.js';
import { createLogger } from '../../src/logger.js';
import { analyze, benchServices, fmt, machineLine, openBenchDatabase, rowsOf, seedWorkspace, targets, timed } from './audience-data.js';
import { percentile } from './common.js';

const SENDS = Number(process.env.BENCH_CANCEL_SENDS ?? 100_000);
const BATCH = Number(process.env.BENCH_CANCEL_BATCH ?? SKIP_BATCH_ROWS);
const STATEMENT_TIMEOUT_MS = 10_000;

/** A campaign whose first step was sent and whose second step is queued, `SENDS` recipients. */
async function seedCampaign(db: Db, workspaceId: string, name: string): Promise<string> {
  const [c] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, steps, launched_at)
      values (${workspaceId}::uuid, ${name}, 'transactional', 'Hi', 'x', 'sending', '{"contactIds":[]}', '[{"afterDays":2}]', now() - interval '3 days')
      returning id`),
  );
  await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}::uuid, ${name} || g || '@bench.test' from generate_series(1, ${SENDS}::int) g`);
  for (const [step, status] of [[0, 'sent'], [1, 'queued']] as const) {
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, due_at, sent_at)
      select workspace_id, ${c!.id}::uuid, ${step}, id, email, gen_random_uuid()::text || '@bench.test', ${status}::send_status,
             now() + ${step} * interval '2 days', case when ${status} = 'sent' then now() - interval '1 day' end
      from recipients where workspace_id = ${workspaceId}::uuid and email like ${`${name}%`}`);
  }
  return c!.id;
}

/** main's `campaigns.repo` skipQueued at 741b80d, word for word: every queued send of the campaign in one statement. */
const mainSkipQueued = (campaignId: string) => sql`
  update campaign_sends set status = 'skipped', skip_reason = ${'cancelled'}
  where id in (select id from campaign_sends where campaign_id = ${campaignId} and status = 'queued' order by id for update)
    and status = 'queued'`;

/** `select 1` every 5 ms through `db` until stopped: the longest and the 99th percentile wait. */
function probe(db: Db) {
  const waits: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      await db.execute(sql`select 1`);
      waits.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return { max: Math.max(0, ...waits), p99: percentile(waits, 99) ?? 0, n: waits.length };
  };
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const waitLine = (w: { max: number; p99: number; n: number }) => `a request's wait for the database: max ${s(w.max)}, p99 ${w.p99.toFixed(0)} ms (${w.n} probes)`;

console.log(`cancel: ${fmt(SENDS)} queued sends (and as many sent before them), batches of ${fmt(BATCH)}; ${machineLine()}`);
for (const target of targets) {
  const bench = await openBenchDatabase(target, { statementTimeoutMs: 3_600_000 });
  if (!bench) continue;
  try {
    const { database } = bench;
    const { db } = database;
    const ws = await seedWorkspace(db, 'Cancel');
    const seeded = await timed(async () => [await seedCampaign(db, ws.workspaceId, 'before'), await seedCampaign(db, ws.workspaceId, 'after')]);
    const [before, after] = seeded.value as [string, string];
    await analyze(db);
    console.log(`\n[${target}] seeded in ${s(seeded.ms)}`);

    // Before: one transaction, as main's cancel.
    let waiting = probe(db);
    const old = await timed(() =>
      db
        .transaction(async (tx) => {
          if (target === 'server') await tx.execute(sql.raw(`set local statement_timeout = ${STATEMENT_TIMEOUT_MS}`));
          await createCampaignsRepo(tx as unknown as Db).transition(before, ['sending'], { status: 'cancelled', statusReason: 'cancelled_by_user' });
          await tx.execute(mainSkipQueued(before));
        })
        .then(() => 'ok', (error: Error) => `failed: ${(error.cause as Error | undefined)?.message ?? error.message}`),
    );
    console.log(`before (one statement): the cancel ${old.value} in ${s(old.ms)}; ${waitLine(await waiting())}`);

    // After: the service's cancel, then the worker's sweep.
    const services = benchServices(database);
    waiting = probe(db);
    const cancel = await timed(() => services.campaigns.cancel(ws.auth, after));
    const answerWait = await waiting();
    console.log(
      `after: the cancel answered in ${s(cancel.ms)} (inline up to ${CANCEL_INLINE_MS} ms), ${fmt(cancel.value.progress.queued)} still queued; ${waitLine(answerWait)}`,
    );
    const repo = createCancelledSendsRepo(db);
    const batchMs: number[] = [];
    const timedRepo: CancelledSendsRepo = {
      ...repo,
      skipBatch: async (id, limit) => {
        const started = performance.now();
        const n = await repo.skipBatch(id, limit);
        if (n > 0) batchMs.push(performance.now() - started);
        return n;
      },
    };
    const sweeper = createCancelledSends({ repo: timedRepo, logger: createLogger('silent'), batchRows: BATCH });
    waiting = probe(db);
    const rest = await timed(async () => {
      while ((await repo.pending(1)).length > 0) await sweeper.sweep();
    });
    const restWait = await waiting();
    const [left] = rowsOf<{ queued: number; skipped: number }>(
      await db.execute(sql`
        select count(*) filter (where status = 'queued')::int as queued, count(*) filter (where status = 'skipped')::int as skipped
        from campaign_sends where campaign_id = ${after}::uuid`),
    );
    console.log(
      `after: the sweep skipped the rest in ${s(rest.ms)}: ${batchMs.length} batches, ${batchMs.length ? `${percentile(batchMs, 50)!.toFixed(0)} ms median, ${Math.max(...batchMs).toFixed(0)} ms max` : '-'}; ${waitLine(restWait)}`,
    );
    console.log(`after: ${fmt(Number(left!.skipped))} skipped, ${fmt(Number(left!.queued))} queued; cancel + sweep ${s(cancel.ms + rest.ms)}`);
  } finally {
    await bench.close();
  }
}
