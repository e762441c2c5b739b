import { beforeAll, expect, it } from 'vitest';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, recipientAnswers } from '../helpers/gmail.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Replies skip a recipient's queued follow-ups whatever the campaign's state, but complete only a
 * sending campaign (completeIfDone): one paused meanwhile, every follow-up skipped, was resumed to
 * `sending` with nothing queued, and its progress said the next send was now (`nextSendAt` fell
 * back to the present when nothing was queued) until a worker's tick completed it. The README's
 * states promise resume → sending, and sending → completed once every send is settled: the resume
 * completes it. And a sending campaign with nothing queued (its last send in flight) has no next
 * send. Both databases, over the API.
 */
const ctx = useAppWithOwner();
const { fx, followUps, campaign } = sequenceEndChecks(ctx);
const SENDER = `resume-left-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
}, 60_000);

const action = (campaignId: string, name: 'pause' | 'resume') => ctx.app.api('POST', `/api/campaigns/${campaignId}/${name}`, { token: ctx.owner.token, json: {} });

it('a paused campaign whose every follow-up a reply skipped completes when it is resumed, with no next send', async () => {
  const subject = `Resume nothing left ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'rn' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { kind: 'transactional', steps: [{ afterDays: 3, text: 'Just following up' }] });
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  expect((await action(campaignId, 'pause')).body.status).toBe('paused');

  await recipientAnswers(ctx.app, SENDER, person!.email, subject);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'replied']]);
  expect((await campaign(campaignId)).status, 'a paused campaign stays paused').toBe('paused');

  const resumed = await action(campaignId, 'resume');
  expect(resumed.status, resumed.text).toBe(200);
  // Before: `sending`, nextSendAt now, until the worker's next tick.
  expect(resumed.body).toMatchObject({ status: 'completed', progress: { queued: 0, sending: 0, nextSendAt: null } });
  expect(resumed.body.completedAt).not.toBeNull();
  expect(await campaign(campaignId)).toMatchObject({ status: 'completed' });
});

it('a sending campaign whose last send is in flight shows no next send', async () => {
  const subject = `Last in flight ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'rf' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { kind: 'transactional' });
  let during: Awaited<ReturnType<typeof campaign>> | undefined;
  await separateWorker(ctx.app, {
    concurrency: 1,
    // Gmail has it; its sent record has not been written.
    afterGmailAccepted: async () => void (during = await campaign(campaignId)),
  }).tick();
  // Before: nextSendAt was now, though nothing was queued.
  expect(during).toMatchObject({ status: 'sending', progress: { queued: 0, sending: 1, nextSendAt: null } });
  expect((await campaign(campaignId)).status).toBe('completed');
});
