import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { readSendCounts, recountSendsFromLedger } from '../../src/campaigns/send-counts.repo.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, liftPause, recipientAnswers } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';

/*
 * A person's reply recorded while the recipient's next step is claimed (its Gmail request under
 * way, or its outcome awaiting recovery). Sync skips the recipient's *queued* later steps
 * (follow-ups.repo.ts skipFollowUps): the claimed one is not queued, so it was left alone,
 * and when Gmail then refused it (a 429 whose Retry-After outlasts the pacer's longest wait) it
 * went back to the queue due at Retry-After — or, found unsent by recovery, due at once. No mail
 * went out (the gate skipped it then), but the campaign showed `sending`, a follow-up queued for
 * someone who had answered, until then (an attacker's finding). Now the requeue writes it
 * `skipped` (`replied`) by the gate's rule and completes the campaign (requeue-unless-refused.ts;
 * a suppression, a consent withdrawal or a bounce meanwhile: refused-in-flight.test.ts).
 * Both databases; the last case, the race with the reply's transaction, on the server only
 * (PGlite runs each statement and transaction alone: nothing interleaves there).
 */
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = `reply-requeue-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched transactional campaign to one new contact: step 0, then a follow-up due at once. */
async function launchTwoSteps(subject: string) {
  const [person] = await fx.audience(1, { prefix: 'rq' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { kind: 'transactional', steps: [{ afterDays: 0, text: 'Just following up' }] });
  return { campaignId, person: person! };
}

async function followUp(campaignId: string) {
  const [row] = await query<{ status: string; skip_reason: string | null; due_at: Date }>(
    sql`select status::text as status, skip_reason, due_at from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1`,
  );
  return row!;
}

async function campaign(campaignId: string) {
  const res = await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token });
  expect(res.status, res.text).toBe(200);
  return res.body as { status: string; progress: { queued: number; sending: number; nextSendAt: string | null } };
}

/** The reply ended the sequence: the follow-up skipped `replied`, the campaign completed, the counters right, one copy received. */
async function expectSequenceEnded(campaignId: string, person: { email: string }, subject: string) {
  expect(await followUp(campaignId)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
  const after = await campaign(campaignId);
  expect(after.status, 'nothing left to send: completed, not `sending` with a follow-up queued').toBe('completed');
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, nextSendAt: null });
  const db = ctx.app.database.db;
  expect(await readSendCounts(db, campaignId)).toEqual(await recountSendsFromLedger(db, campaignId));
  expect(ctx.app.sandbox.control.listMessages(person.email).filter((m) => m.subject.includes(subject)).length, 'the recipient holds step 0 only').toBe(1);
}

it('a reply recorded while the follow-up’s request is under way, then Gmail answers 429 (Retry-After 10 min): the follow-up is skipped `replied` and the campaign completes', async () => {
  const subject = `Reply during 429 ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject);
  const worker = separateWorker(ctx.app, { concurrency: 1 });
  await worker.tick(); // step 0 sent; the follow-up queued, due now
  expect((await followUp(campaignId)).status).toBe('queued');
  // The follow-up's request is held 2 s by Gmail, then refused: longer than the pacer waits in process (5 s in tests).
  ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 2_000, endpoint: 'send', mailbox: SENDER, times: 1 });
  ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: 600, endpoint: 'send', mailbox: SENDER, times: 1 });
  try {
    const pass = worker.tick();
    await until(async () => (await followUp(campaignId)).status === 'sending', 'the follow-up is claimed');
    await recipientAnswers(ctx.app, SENDER, person.email, subject);
    await ctx.app.services.sync.syncMailbox(mailbox.id);
    expect((await query(sql`select 1 from mail_events where type = 'reply' and recipient = ${person.email}`)).length, 'sync recorded the reply').toBe(1);
    expect((await followUp(campaignId)).status, 'still in flight when the reply is recorded: the reply leaves it alone').toBe('sending');
    await pass;
    // Before: `queued`, due in 10 minutes, the campaign `sending` until then.
    await expectSequenceEnded(campaignId, person, subject);
  } finally {
    ctx.app.sandbox.control.clearFaults();
    await liftPause(ctx.app, mailbox.id); // the 429's pause of the mailbox
  }
}, 30_000);

it('a reply recorded while the follow-up’s outcome awaits recovery (Gmail answered 500), which finds no copy: the follow-up is skipped `replied`, not queued again', async () => {
  const subject = `Reply during recovery ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject);
  const worker = separateWorker(ctx.app, { concurrency: 1, resolveDelayMs: 1 });
  await worker.tick(); // step 0 sent; the follow-up queued, due now
  // No clear answer: the follow-up stays `sending` until recovery has searched the mailbox for it.
  ctx.app.sandbox.control.injectFault({ kind: 'backendError', endpoint: 'send', mailbox: SENDER, times: 1 });
  await worker.tick();
  expect((await followUp(campaignId)).status).toBe('sending');
  await recipientAnswers(ctx.app, SENDER, person.email, subject);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  expect((await followUp(campaignId)).status, 'awaiting recovery when the reply is recorded: the reply leaves it alone').toBe('sending');
  // Three looks find no copy: not sent. Before: queued again, due now, the campaign `sending`.
  for (let look = 0; look < 3 && (await followUp(campaignId)).status === 'sending'; look += 1) {
    await new Promise((r) => setTimeout(r, 50));
    await worker.recoverStuck(new Date(Date.now() + 3_600_000));
  }
  await expectSequenceEnded(campaignId, person, subject);
}, 30_000);

/**
 * The requeue and the reply's transaction at the same moment: another session holds the
 * follow-up's row, so the requeue's statement, its snapshot taken, waits in it; sync records the
 * reply meanwhile; then the row is let go. Without the recipient's address lock before the
 * requeue, the reply committed after the requeue's snapshot and was seen by neither side — the
 * requeue wrote `queued`, the reply's skip found the row `sending` — and the follow-up stayed
 * queued until Retry-After. With it, sync waits for the requeue, then skips the queued row itself.
 */
it.runIf(process.env.TEST_DATABASE_URL)('a reply committed while the follow-up is being requeued after a 429: whichever comes second sees the first (server)', async () => {
  const subject = `Reply requeue race ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject);
  const worker = separateWorker(ctx.app, { concurrency: 1 });
  await worker.tick();
  const url = (ctx.app.database as unknown as { url: string }).url;
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  const asks = (question: string, params: unknown[]) => async () => (await other.query(question, params)).rows[0]?.yes === true;
  ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 1_500, endpoint: 'send', mailbox: SENDER, times: 1 });
  ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: 600, endpoint: 'send', mailbox: SENDER, times: 1 });
  let synced: Promise<unknown> = Promise.resolve();
  try {
    const pass = worker.tick();
    await until(async () => (await followUp(campaignId)).status === 'sending', 'the follow-up is claimed');
    const [row] = await query<{ id: string }>(sql`select id from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1`);
    await other.query('begin');
    await other.query('select 1 from campaign_sends where id = $1 for update', [row!.id]);
    try {
      const self = `pid <> pg_backend_pid() and datname = current_database() and wait_event_type = 'Lock'`;
      await until(asks(`select exists (select 1 from pg_stat_activity where ${self} and wait_event = 'transactionid') as yes`, []), 'the requeue waits for the row');
      await liftPause(ctx.app, mailbox.id); // the 429's pause, so that sync can read the mailbox
      await recipientAnswers(ctx.app, SENDER, person.email, subject);
      synced = ctx.app.services.sync.syncMailbox(mailbox.id);
      // Committed — or, under the fix, waiting for the requeue's address lock.
      await until(
        asks(`select exists (select 1 from mail_events where type = 'reply' and recipient = $1) or exists (select 1 from pg_stat_activity where ${self} and wait_event = 'advisory') as yes`, [person.email]),
        'sync recorded the reply',
      );
    } finally {
      await other.query('commit');
    }
    await pass;
    await synced;
    await expectSequenceEnded(campaignId, person, subject);
  } finally {
    await other.end();
    ctx.app.sandbox.control.clearFaults();
    await liftPause(ctx.app, mailbox.id);
  }
}, 30_000);
