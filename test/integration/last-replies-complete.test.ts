import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createFollowUpRules } from '../../src/campaigns/follow-ups.repo.js';
import { gateSql } from '../../src/campaigns/gate-sql.js';
import type { Db } from '../../src/db/connect.js';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { twoCounterSlots, waitForLockWaiters } from '../helpers/lock-waiters.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * The last two recipients with follow-ups queued reply at the same moment: each reply's
 * transaction skips its recipient's follow-up (follow-ups.repo.ts skipFollowUps) and asks whether
 * the campaign is done (completeIfDone). Asked in one UPDATE, the answer came from the statement's
 * snapshot, taken before the other had committed: each counted the other's row still queued and
 * neither completed the campaign — it showed `sending` until a worker's tick. Likewise the tick's
 * own question, asked while a reply's transaction was still open. Now the campaign's completion lock
 * is taken first and a new statement asks, so whichever comes second sees the first's commit.
 *
 * Deterministic with sessions of the test's own: the first reply's transaction is held open after
 * its question, the second runs meanwhile (and, fixed, waits for the first's lock), then the
 * first commits. The two sessions write different slots of the counters (send-counts.repo.ts,
 * `pg_backend_pid() % 32`): on one slot the second's skip waited for the first's counter row and
 * asked after its commit anyway. Server only: PGlite runs one transaction at a time.
 */
const ctx = useAppWithOwner();
const { fx, followUps, campaign, expectCountersRight } = sequenceEndChecks(ctx);
const SENDER = `last-replies-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

const databaseUrl = () => (ctx.app.database as unknown as { url: string }).url;
const onServer = Boolean(process.env.TEST_DATABASE_URL);

beforeAll(async () => {
  if (!onServer) return;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
}, 60_000);

/** A sending campaign to two people, step 0 sent to both, their follow-ups queued; each step 0's message id. */
async function bothFollowUpsQueued(subject: string) {
  const audience = await fx.audience(2, { prefix: 'lr' });
  const campaignId = await fx.launched(mailbox.id, subject, audience.map((p) => p.id), { kind: 'transactional', steps: [{ afterDays: 3, text: 'Just following up' }] });
  await separateWorker(ctx.app, { concurrency: 2 }).tick();
  expect((await followUps(campaignId)).map((r) => r.status)).toEqual(['queued', 'queued']);
  const rows = ((await ctx.app.database.db.execute(
    sql`select message_id from campaign_sends where campaign_id = ${campaignId}::uuid and step = 0 order by email`,
  )) as unknown as { rows: { message_id: string }[] }).rows;
  return { campaignId, messageIds: rows.map((r) => String(r.message_id)) };
}

/** A reply's part of sync's transaction on this session: the answered recipient's lock, then the skip (and the completion). */
async function replySkips(client: pg.Client, messageId: string) {
  const db = drizzle(client) as unknown as Db;
  const rules = createFollowUpRules(db);
  await rules.lockForReply(ctx.owner.workspaceId, messageId);
  return rules.skipFollowUps(ctx.owner.workspaceId, { reason: 'replied', messageId }, new Date());
}

/**
 * The reply to `messageId` skips its follow-up in a transaction of session A, which asks whether
 * the campaign is done and stays open; meanwhile `beside` runs on session B. A commits once
 * `beside` has finished or waits for a lock (seen from a third session); returns what it returned.
 */
async function besideReplyHeldOpen<T>(messageId: string, beside: (b: pg.Client) => Promise<T>): Promise<T> {
  const { first: a, second: b, third: watcher, opened } = await twoCounterSlots(databaseUrl());
  try {
    await a.query('begin');
    expect(await replySkips(a, messageId)).toBe(1);
    let finished = false;
    const running = beside(b).finally(() => (finished = true));
    await waitForLockWaiters(watcher, 1, { orUntil: () => finished, timeoutMs: 15_000 });
    await a.query('commit');
    return await running;
  } finally {
    await Promise.all(opened.map((c) => c.end()));
  }
}

it.runIf(onServer)('two last replies at once: whichever commits second completes the campaign, in its own transaction', async () => {
  const { campaignId, messageIds } = await bothFollowUpsQueued(`Last replies ${Date.now()}`);
  // A has asked (the other follow-up still queued) and is still open; B replies meanwhile.
  const second = await besideReplyHeldOpen(messageIds[0]!, async (b) => {
    await b.query('begin');
    const skipped = await replySkips(b, messageIds[1]!);
    await b.query('commit');
    return skipped;
  });
  expect(second).toBe(1);
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'replied'], ['skipped', 'replied']]);
  // No worker has run since the follow-ups were queued.
  const after = await campaign(campaignId);
  expect(after.status, 'completed by the reply that came second, not left `sending` for a tick').toBe('completed');
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, nextSendAt: null });
  await expectCountersRight(campaignId);
}, 60_000);

it.runIf(onServer)('the worker’s tick asks while a reply’s transaction is open: it waits for it and completes the campaign', async () => {
  const { campaignId, messageIds } = await bothFollowUpsQueued(`Tick beside reply ${Date.now()}`);
  await besideReplyHeldOpen(messageIds[0]!, async (b) => {
    // The other recipient's last send settles (committed) while the reply is open, then the tick asks.
    // (By the recipient: a scan of the campaign's queued rows would wait for the one A holds.)
    const settled = await b.query(
      `update campaign_sends set status = 'failed', error_code = 'test'
       where campaign_id = $1 and step = 1 and recipient_id = (select recipient_id from campaign_sends where message_id = $2) returning id`,
      [campaignId, messageIds[1]],
    );
    expect(settled.rowCount).toBe(1);
    await createCampaignsRepo(drizzle(b) as unknown as Db).completeIfDone(campaignId, new Date());
  });
  expect((await campaign(campaignId)).status, 'completed by the tick that waited, not left `sending`').toBe('completed');
  await expectCountersRight(campaignId);
}, 60_000);

/** A database error's code (drizzle wraps the driver's error as its cause). */
const errorCode = (error: unknown) => String((error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code);

/** Two sessions of their own writing the same counter slot (`pg_backend_pid() % 32`): backends' pids come in turn. */
async function sameSlotSessions(): Promise<[pg.Client, pg.Client]> {
  const open = async () => {
    const client = new pg.Client({ connectionString: databaseUrl() });
    await client.connect();
    return { client, slot: Number((await client.query('select pg_backend_pid() % 32 as slot')).rows[0].slot) };
  };
  const first = await open();
  for (let i = 0; i < 500; i += 1) {
    const other = await open();
    if (other.slot === first.slot) return [first.client, other.client];
    await other.client.end();
  }
  await first.client.end();
  throw new Error('no second session on the same counter slot');
}

/*
 * A claim of one recipient's follow-up holds the campaign's row (the gate's share lock) and then
 * writes the counters; a reply of the other recipient, on the same counter slot, wrote the
 * counters (its skip) and then asked completeIfDone. Had the question locked the campaign's row
 * whenever it asked, each waited for the other (40P01, one side's work lost) — with something
 * still queued, so there was nothing to complete.
 */
it.runIf(onServer)('a reply beside a claim of the campaign on the same counter slot: both commit, no deadlock', async () => {
  const { campaignId, messageIds } = await bothFollowUpsQueued(`Reply beside claim ${Date.now()}`);
  const [claim, reply] = await sameSlotSessions();
  const watcher = new pg.Client({ connectionString: databaseUrl() });
  await watcher.connect();
  try {
    const [other] = (
      await claim.query(
        `select id from campaign_sends where campaign_id = $1 and step = 1 and recipient_id = (select recipient_id from campaign_sends where message_id = $2)`,
        [campaignId, messageIds[1]],
      )
    ).rows;
    const row = await createCampaignsRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, campaignId);
    await claim.query('begin');
    // The gate's own statement: the campaign's row (share), then the follow-up's.
    await drizzle(claim).execute(gateSql([String(other.id)], row!, mailbox.id, true, new Date(), 3));
    let finished = false;
    const replied = (async () => {
      await reply.query('begin');
      const skipped = await replySkips(reply, messageIds[0]!);
      await reply.query('commit');
      return skipped;
    })().finally(() => (finished = true));
    replied.catch(() => undefined);
    await waitForLockWaiters(watcher, 1, { orUntil: () => finished, timeoutMs: 15_000 });
    // The claim's write, as the gate's statement makes it: the counters' row of the reply's slot.
    const claimed = claim.query(`update campaign_sends set status = 'sending', lease_owner = 'test', lease_expires_at = now() + interval '1 minute' where id = $1`, [other.id]);
    const outcomes = await Promise.allSettled([replied, claimed]);
    expect(outcomes.map((o) => (o.status === 'rejected' ? errorCode(o.reason) : 'ok'))).toEqual(['ok', 'ok']);
    await claim.query('commit');
    expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'replied'], ['sending', null]]);
    expect((await campaign(campaignId)).status).toBe('sending');
    await expectCountersRight(campaignId);
  } finally {
    await claim.query('rollback').catch(() => undefined);
    await Promise.all([claim.end(), reply.end(), watcher.end()]);
  }
}, 60_000);
