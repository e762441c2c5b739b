import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { campaignFixtures, crashingWorker, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, recipientAnswers } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';

/*
 * An out-of-office holds the recipient's later steps until AUTO_REPLY_FOLLOW_UP_DELAY_DAYS after
 * it (campaigns/README.md), also when it arrives while a step is in flight — as it usually does,
 * within seconds. follow-ups.repo.ts deferFollowUps moves only rows queued when sync records the
 * reply; the rest is the gate's and the next step's queuing (auto-reply-hold-sql.ts). Before, the
 * delay was lost (an attacker's finding): recorded while the step it answers awaited its sent
 * record, or a crashed worker's send awaited recovery, the follow-up was queued `afterDays` after
 * the record, 2 days early (and went out then); recorded while the follow-up itself waited out a
 * 429, the follow-up went out when the pause ended.
 */
const ctx = useAppWithOwner({ env: { AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: '3' } });
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = `ooo-inflight-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };
const DAY = 86_400_000;

const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched transactional campaign to one new contact: step 0, then one follow-up `afterDays` later. */
async function launchOneFollowUp(subject: string, afterDays: number) {
  const [person] = await fx.audience(1, { prefix: 'ooo' });
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId: mailbox.id, subject, text: 'Hello', contactIds: [person!.id], steps: [{ afterDays, text: 'Just following up' }] },
  });
  expect(created.status, created.text).toBe(201);
  const campaignId = created.body.id as string;
  expect((await ctx.app.api('POST', `/api/campaigns/${campaignId}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  return { campaignId, person: person! };
}

/** The recipient's out-of-office to step 0 arrives in the sender's mailbox (what sync will read). */
const outOfOfficeArrives = (person: { email: string }, subject: string) => recipientAnswers(ctx.app, SENDER, person.email, subject, true);

/** When sync recorded the recipient's out-of-office. */
async function autoReplyRecordedAt(person: { email: string }): Promise<Date> {
  const [event] = await query<{ at: Date }>(sql`select at from mail_events where type = 'auto_reply' and recipient = ${person.email}`);
  expect(event, 'the out-of-office is recorded').toBeDefined();
  return new Date(event!.at);
}

/** The out-of-office arrives and sync records it; its time. */
async function outOfOfficeIsSynced(person: { email: string }, subject: string): Promise<Date> {
  await outOfOfficeArrives(person, subject);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  return autoReplyRecordedAt(person);
}

async function followUp(campaignId: string) {
  const [row] = await query<{ status: string; due_at: Date }>(sql`select status::text as status, due_at from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1`);
  return row!;
}

const copiesReceived = (person: { email: string }, subject: string) => ctx.app.sandbox.control.listMessages(person.email).filter((m) => m.subject.includes(subject)).length;

/** The follow-up waits, queued, until the out-of-office's delay has passed. */
async function expectHeldUntilDelayAfter(campaignId: string, autoReplyAt: Date) {
  const row = await followUp(campaignId);
  expect(row.status).toBe('queued');
  expect(new Date(row.due_at).getTime(), 'due no earlier than the out-of-office + 3 days').toBeGreaterThanOrEqual(autoReplyAt.getTime() + 3 * DAY);
}

it('an out-of-office recorded while the step it answers awaits its sent record holds the follow-up until 3 days after it', async () => {
  const subject = `OOO record ${Date.now()}`;
  const { campaignId, person } = await launchOneFollowUp(subject, 1);
  let autoReplyAt: Date | undefined;
  const worker = separateWorker(ctx.app, {
    concurrency: 1,
    // Between Gmail's accept and the sent record (a round's records wait up to 1 s for each other).
    afterGmailAccepted: async () => {
      autoReplyAt = await outOfOfficeIsSynced(person, subject);
    },
  });
  await worker.tick();
  // Queued at sent + 1 day before: the follow-up's row did not exist when the out-of-office was recorded.
  await expectHeldUntilDelayAfter(campaignId, autoReplyAt!);
});

it('an out-of-office recorded while a crashed worker’s step awaits recovery holds the follow-up: a worker a day later sends nothing', async () => {
  const subject = `OOO crash ${Date.now()}`;
  const { campaignId, person } = await launchOneFollowUp(subject, 1);
  await crashingWorker(ctx.app, 1_500).tick();
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sending']);
  const autoReplyAt = await outOfOfficeIsSynced(person, subject);
  // Recovery finds the copy in Sent: recorded sent, the follow-up queued. Asked as of just past the
  // crashed claim's 1.5 s lease, instead of sleeping until it lapses.
  expect(await ctx.app.services.sendWorker.recoverStuck(new Date(Date.now() + 1_800))).toBe(1);
  await expectHeldUntilDelayAfter(campaignId, autoReplyAt);

  // One day and a minute later (the out-of-office asked for three): the follow-up does not go out.
  const later = new Date(Date.now() + DAY + 60_000);
  await separateWorker(ctx.app, { concurrency: 1, now: () => later }).tick();
  await expectHeldUntilDelayAfter(campaignId, autoReplyAt);
  expect(copiesReceived(person, subject), 'the recipient holds step 0 only').toBe(1);
});

/**
 * Step 0 sent, the follow-up due at once; sync records the out-of-office to step 0 while the
 * follow-up, claimed, waits out a 429 in process. A 429 pauses every Gmail call of the mailbox,
 * sync's too, so sync read the out-of-office before the pause (its read slowed to span the
 * claim and the 429) and records it during it.
 */
async function outOfOfficeDuringFollowUpsPause(subject: string) {
  const { campaignId, person } = await launchOneFollowUp(subject, 0);
  const worker = separateWorker(ctx.app, { concurrency: 1 });
  await worker.tick(); // step 0 sent; the follow-up queued, due now
  expect((await followUp(campaignId)).status).toBe('queued');
  await outOfOfficeArrives(person, subject);
  // Each step waits for the one before it to be seen (a fault is listed until a request takes it),
  // not for a fixed sleep: sync's read has reached the sandbox before the claim's send, and the
  // claim has had its 429 before that read is answered (2.5 s), which is before the pause ends (5 s
  // after the 429; the test app's pacer waits 5 s at most in process). With 300 ms and 400 ms
  // sleeps instead, and 1.5 s and 4 s, a loaded host could get these out of order.
  const faults = ctx.app.sandbox.control;
  const taken = (fault: { id: string }) => () => !faults.listFaults().some((f) => f.id === fault.id);
  const slowRead = faults.injectFault({ kind: 'latency', ms: 2_500, endpoint: 'get', mailbox: SENDER, times: 1 });
  const sync = ctx.app.services.sync.syncMailbox(mailbox.id);
  await until(taken(slowRead), 'sync reads the out-of-office');
  const rateLimited = faults.injectFault({ kind: 'rateLimit', endpoint: 'send', mailbox: SENDER, retryAfterSeconds: 5, times: 1 });
  const pass = worker.tick();
  await until(taken(rateLimited), 'the follow-up’s send is answered 429');
  expect((await followUp(campaignId)).status, 'claimed, waiting out the 429').toBe('sending');
  await sync;
  const autoReplyAt = await autoReplyRecordedAt(person);
  expect((await followUp(campaignId)).status, 'still waiting out the 429 when the out-of-office is recorded').toBe('sending');
  return { campaignId, person, worker, pass, autoReplyAt };
}

it('an out-of-office recorded while the follow-up waits out a 429 hands the follow-up back to the queue until 3 days after it', async () => {
  const subject = `OOO 429 ${Date.now()}`;
  const { campaignId, person, pass, autoReplyAt } = await outOfOfficeDuringFollowUpsPause(subject);
  await pass;
  await expectHeldUntilDelayAfter(campaignId, autoReplyAt);
  expect(copiesReceived(person, subject), 'the recipient holds step 0 only').toBe(1);
  const [{ n }] = (await query<{ n: number }>(sql`select count(*)::int as n from messages where subject like ${`%${subject}%`} and status = 'sending'`)) as [{ n: number }];
  expect(n, 'the attempt’s message row went with the hand-back').toBe(0);
});

it('a follow-up handed back on shutdown while an out-of-office holds it is queued by the next claim for the time the out-of-office holds it', async () => {
  const subject = `OOO stop ${Date.now()}`;
  const { campaignId, person, worker, pass, autoReplyAt } = await outOfOfficeDuringFollowUpsPause(subject);
  // SIGTERM during the pause: the claimed follow-up is requeued, due now (the requeue knows nothing of the out-of-office).
  await worker.stop(4_000);
  expect((await followUp(campaignId)).status).toBe('queued');
  // The pass ends at once (the follow-up leaves its retry's wait in the pacer); the next worker
  // must find the mailbox's 429 pause over, so wait for the pacer's next turn (after the pause).
  await pass;
  await ctx.app.services.pacer.run(mailbox.id, 0, async () => undefined);
  // Another worker reserves it (due now) and its claim finds it held: it does not go out, and is
  // queued for its time — not reserved again and again until then, nor shown due now.
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  await expectHeldUntilDelayAfter(campaignId, autoReplyAt);
  expect(copiesReceived(person, subject), 'the recipient holds step 0 only').toBe(1);
});
