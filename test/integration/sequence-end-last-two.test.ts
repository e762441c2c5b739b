import { beforeAll, expect, it } from 'vitest';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * The last two sequences of a campaign ended at the same moment, by two transactions (two entries
 * added through the API, one address each): each skips its own queued follow-up and asks whether
 * the campaign is done (completeIfDone) — and, reading before the other committed, each saw the
 * other's follow-up still queued. Neither completed it: the campaign showed `sending` with
 * nothing left until a worker's next pass (found by sequence-end-race.test.ts). Server only
 * (PGlite runs one transaction at a time: nothing interleaves there).
 */
const ctx = useAppWithOwner();
const { fx, campaign, expectCountersRight } = sequenceEndChecks(ctx);
const SENDER = `last-two-${Date.now()}@acme.test`;
const PAIRS = 12;
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

it.runIf(process.env.TEST_DATABASE_URL)('two entries ending a campaign’s last two sequences at once complete it, whichever commits second (server)', async () => {
  const launched: { campaignId: string; people: { id: string; email: string }[] }[] = [];
  for (let i = 0; i < PAIRS; i += 1) {
    const people = await fx.audience(2, { prefix: `l2-${i}-` });
    const campaignId = await fx.launched(mailbox.id, `Last two ${i} ${Date.now()}`, people.map((p) => p.id), { kind: 'transactional', steps: [{ afterDays: 3, text: 'Just following up' }] });
    launched.push({ campaignId, people });
  }
  const worker = separateWorker(ctx.app, { concurrency: 4 });
  for (let i = 0; i < 20 && (await worker.tick()) > 0; i += 1);
  const stuck: string[] = [];
  for (const { campaignId, people } of launched) {
    expect((await campaign(campaignId)).progress).toMatchObject({ sent: 2, queued: 2 });
    const answers = await Promise.all(people.map((p) => ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email: p.email, reason: 'manual' } })));
    expect(answers.map((a) => a.status)).toEqual([201, 201]);
    const after = await campaign(campaignId);
    expect(after.progress).toMatchObject({ sent: 2, queued: 0, sending: 0, skipped: 2 });
    if (after.status !== 'completed') stuck.push(campaignId);
    await expectCountersRight(campaignId);
  }
  expect(stuck, 'campaigns left `sending` with nothing left to send').toEqual([]);
}, 60_000);
