import { beforeAll, expect, it } from 'vitest';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, recipientAnswers } from '../helpers/gmail.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';

/*
 * A person's reply ends the recipient's sequence when it is recorded, not when each later step
 * comes due. Before, sync only wrote the `reply` event: the follow-up stayed `queued` until its
 * day (`afterDays` later), the gate then skipped it `replied`, and only then did the campaign
 * complete — a campaign whose every recipient had answered showed `sending` for days, with
 * follow-ups "queued" for people who had already replied. Now the reply's transaction skips that
 * recipient's queued later steps of the campaign (reason `replied`, as the gate's) and completes
 * the campaign when nothing is left; a next step queued after the reply (its step's sent record
 * or recovery came later) is written `skipped` at once. An out-of-office still only holds the
 * follow-ups (auto-reply-hold-sql.ts). Both databases. The last case is a guard, not a
 * regression test: replies synced while group claims and sent records run, checked on the
 * server against its own deadlock count (the reply's transaction takes the recipient's address
 * lock, then its rows, then the campaign's row — holdOrderLock); the worker waits once, after its
 * first tick, for a reply to skip a queued follow-up, so that the case always runs.
 */
const ctx = useAppWithOwner({ env: { AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: '3' } });
const { fx, followUps, campaign, expectCountersRight, copiesReceived, sendBeside, recoveredAfter } = sequenceEndChecks(ctx);
const SENDER = `reply-ends-${Date.now()}@acme.test`;
const DAY = 86_400_000;
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched transactional campaign: step 0, then one follow-up `afterDays` (3) later. */
async function launchTwoSteps(subject: string, people: number, afterDays = 3) {
  const audience = await fx.audience(people, { prefix: 'rs' });
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId: mailbox.id, subject, text: 'Hello', contactIds: audience.map((p) => p.id), steps: [{ afterDays, text: 'Just following up' }] },
  });
  expect(created.status, created.text).toBe(201);
  const campaignId = created.body.id as string;
  expect((await ctx.app.api('POST', `/api/campaigns/${campaignId}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  return { campaignId, audience };
}

/** The recipient answers step 0 in the sender's mailbox: a person, or an out-of-office. */
const answerArrives = (person: { email: string }, subject: string, automatic = false) => recipientAnswers(ctx.app, SENDER, person.email, subject, automatic);

const sync = () => ctx.app.services.sync.syncMailbox(mailbox.id);

it('a person’s reply to step 0 skips the queued follow-up when sync records it, and the campaign completes at once', async () => {
  const subject = `Reply ends ${Date.now()}`;
  const { campaignId, audience } = await launchTwoSteps(subject, 1);
  const person = audience[0]!;
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  expect((await followUps(campaignId)).map((r) => r.status)).toEqual(['queued']);
  expect((await campaign(campaignId)).status).toBe('sending');

  await answerArrives(person, subject);
  await sync();

  // No worker has run since: the reply's own transaction did it.
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'replied']]);
  const after = await campaign(campaignId);
  expect(after.status, 'nothing left to send: completed, not `sending` for 3 days').toBe('completed');
  expect(after.completedAt).not.toBeNull();
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { replied: 1 }, nextSendAt: null });
  await expectCountersRight(campaignId);
  // Days later nothing goes out.
  await separateWorker(ctx.app, { concurrency: 1, now: () => new Date(Date.now() + 3 * DAY + 60_000) }).tick();
  expect(copiesReceived(person, subject)).toBe(1);
});

it('one of two recipients replies: only their follow-up is skipped; an out-of-office holds the other’s, and the campaign goes on sending', async () => {
  const subject = `Reply and OOO ${Date.now()}`;
  const { campaignId, audience } = await launchTwoSteps(subject, 2);
  const [replier, away] = [audience[0]!, audience[1]!];
  await separateWorker(ctx.app, { concurrency: 2 }).tick();
  const queuedAt = new Map((await followUps(campaignId)).map((r) => [r.email, new Date(r.due_at).getTime()]));

  await answerArrives(replier, subject);
  await answerArrives(away, subject, true);
  await sync();

  const rows = new Map((await followUps(campaignId)).map((r) => [r.email, r]));
  expect(rows.get(replier.email)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
  // The out-of-office moves the follow-up (3 days after it) and stops nothing.
  expect(rows.get(away.email)).toMatchObject({ status: 'queued', skip_reason: null });
  expect(new Date(rows.get(away.email)!.due_at).getTime()).toBeGreaterThanOrEqual(queuedAt.get(away.email)!);
  const after = await campaign(campaignId);
  expect(after.status).toBe('sending');
  expect(after.progress).toMatchObject({ queued: 1, skipped: 1, skippedBecause: { replied: 1 } });
  await expectCountersRight(campaignId);

  // A worker before the follow-up's day: nothing to send, and not completed.
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  expect((await campaign(campaignId)).status).toBe('sending');
});

it('a reply recorded while step 0 awaits its sent record: the follow-up is written skipped, and the next tick completes the campaign', async () => {
  const subject = `Reply before record ${Date.now()}`;
  const { campaignId, audience } = await launchTwoSteps(subject, 1);
  const person = audience[0]!;
  const worker = separateWorker(ctx.app, {
    concurrency: 1,
    // Between Gmail's accept and the sent record: the follow-up's row does not exist yet.
    afterGmailAccepted: async () => {
      await answerArrives(person, subject);
      await sync();
    },
  });
  await worker.tick();
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'replied']]);
  // The tick that recorded the send asked afterwards whether the campaign was done.
  expect((await campaign(campaignId)).status).toBe('completed');
  await expectCountersRight(campaignId);
});

it('a reply recorded while a crashed worker’s step 0 awaits recovery: the follow-up recovery records is skipped, and the campaign completes', async () => {
  const subject = `Reply before recovery ${Date.now()}`;
  const { campaignId, audience } = await launchTwoSteps(subject, 1);
  const person = audience[0]!;
  await recoveredAfter(campaignId, person, subject, 'replied', async () => {
    await answerArrives(person, subject);
    await sync();
  });
});

it('replies synced while a worker sends both steps in rounds of four: no deadlock, every follow-up sent or skipped `replied`, the campaign completes', async () => {
  const subject = `Reply storm ${Date.now()}`;
  // Follow-ups due at once: group claims and sent records of both steps run while sync records replies.
  const { campaignId, audience } = await launchTwoSteps(subject, 12, 0);
  const answered = new Set<string>();
  const replies = async (sending: () => boolean) => {
    while (sending() || answered.size < audience.length) {
      for (const person of audience) {
        if (answered.has(person.email) || copiesReceived(person, subject) === 0) continue;
        await answerArrives(person, subject);
        answered.add(person.email);
      }
      await sync();
      if (!sending() && answered.size < audience.length) break;
    }
  };
  // Left alone, the worker could send every follow-up before sync recorded any reply (it takes
  // each as soon as its step 0 is recorded), and the case would not have run. So it reserves four
  // at a time and, after its first tick (step 0 of four people, their follow-ups queued, due now),
  // waits until a reply has skipped one of them; the other eight race as they come.
  const aReplySkipped = () => until(async () => (await followUps(campaignId)).some((r) => r.status === 'skipped'), 'a reply skips a queued follow-up', 60_000);
  const steps = await sendBeside(campaignId, 'replied', replies, sync, { batchSize: 4, afterFirstTick: aReplySkipped });
  expect(steps).toHaveLength(audience.length);
  expect(steps.filter((r) => r.status === 'skipped').length, 'some replies came while the follow-ups were queued').toBeGreaterThan(0);
}, 120_000);
