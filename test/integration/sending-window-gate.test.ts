import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * No campaign mail leaves after its sending window has closed (campaigns/SEND-LEDGER.md, "The gate").
 * The worker asks the window before each round, but a send then waits in the mailbox's pacer (its
 * pace: up to a minute) before its claim, and a claimed send waits out Gmail's 429 before its retry;
 * the window was not read at either, so a send read inside the window went out after its close.
 * Each test drives the worker's clock: the window is Mondays (UTC), the clock starts on a Monday
 * noon, moves to Tuesday while a send waits, and to the next Monday to reopen the window.
 */
/** The app's clock, when a check reads the campaign's progress at the worker's time; the real time otherwise. */
let appTime: number | undefined;
const ctx = useAppWithOwner({ pacer: { sendsPerMinute: 60 }, now: () => new Date(appTime ?? Date.now()) }); // one send a second: the second of a round waits ~1 s for its grant
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = `window-gate-${Date.now()}@acme.test`;
const DAY = 86_400_000;
const MONDAYS = { days: [1], startHour: 0, endHour: 24, timeZone: 'UTC' };
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER);
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

/** Noon UTC of the first Monday at least a day from now: the launch's due times have come by then. */
function nextMondayNoon(): number {
  const day = new Date(Date.now() + DAY);
  day.setUTCHours(12, 0, 0, 0);
  while (day.getUTCDay() !== 1) day.setUTCDate(day.getUTCDate() + 1);
  return day.getTime();
}

const sendCalls = () => ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: SENDER }).length;

/** Moves `clock` to `to()` as soon as the sandbox has seen one more send request from SENDER than now. */
function onNextSendRequest(move: () => void) {
  const before = sendCalls();
  let watching = true;
  const done = (async () => {
    while (watching && sendCalls() === before) await new Promise((resolve) => setImmediate(resolve));
    if (watching) move();
  })();
  return async () => {
    watching = false;
    await done;
  };
}

async function messageRowsOf(campaignId: string) {
  const rows = (await ctx.app.database.db.execute(
    sql`select m.status from messages m where m.rfc822_message_id in (select rfc822_message_id from campaign_sends where campaign_id = ${campaignId}::uuid)`,
  )) as unknown as { rows: { status: string }[] };
  return rows.rows.map((r) => r.status).sort();
}

it('a send held by the pacer past the window’s close is not claimed; it goes out, once, when the window opens again', async () => {
  const subject = `Window pacer ${Date.now()}`;
  const people = await fx.audience(2, { prefix: 'wpace' });
  const campaignId = await fx.launched(mailbox.id, subject, people.map((p) => p.id), { sendingWindow: MONDAYS });
  let clock = nextMondayNoon();
  const worker = separateWorker(ctx.app, { concurrency: 2, now: () => new Date(clock) });

  // Both are read inside the window and reach the pacer together; the first goes at once, and as
  // it reaches Gmail the clock moves to Tuesday, while the second waits for its grant.
  const stopWatching = onNextSendRequest(() => {
    clock += DAY;
  });
  const sent = await worker.tick();
  await stopWatching();
  expect(sent).toBe(1);
  expect(fx.sentTo(SENDER, subject).size, 'one message left before the close, none after it').toBe(1);
  const ledger = await fx.ledger(campaignId);
  expect(ledger.map((r) => r.status).sort()).toEqual(['queued', 'sent']);
  expect(await messageRowsOf(campaignId), 'no messages row for the send that did not go').toEqual(['sent']);
  // Read at the worker's Tuesday: at the real time (a Monday, some weeks) the window is open.
  appTime = clock;
  try {
    expect((await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body.progress).toMatchObject({ waitingFor: 'sending_window' });
  } finally {
    appTime = undefined;
  }

  // Still Tuesday: nothing goes. The next Monday: the rest, each exactly once.
  expect(await worker.tick()).toBe(0);
  clock += 6 * DAY;
  expect(await worker.runUntilIdle()).toBe(1);
  const copies = fx.sentTo(SENDER, subject);
  expect(people.map((p) => copies.get(p.email))).toEqual([1, 1]);
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sent', 'sent']);
});

it('a claimed send waiting out a 429 past the window’s close goes back to the queue, unsent; it goes out, once, when the window opens again', async () => {
  const subject = `Window retry ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'wretry' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { sendingWindow: MONDAYS });
  let clock = nextMondayNoon();
  const worker = separateWorker(ctx.app, { concurrency: 1, now: () => new Date(clock) });

  // Claimed inside the window; Gmail answers 429 (retry after 2 s), and the clock moves to Tuesday during the pause.
  ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'send', mailbox: SENDER, retryAfterSeconds: 2, times: 1 });
  const stopWatching = onNextSendRequest(() => {
    clock += DAY;
  });
  expect(await worker.tick()).toBe(0);
  await stopWatching();
  expect(sendCalls() > 0).toBe(true);
  expect(fx.sentTo(SENDER, subject).size, 'the retry did not go out after the close').toBe(0);
  const [row] = await fx.ledger(campaignId);
  expect(row).toMatchObject({ status: 'queued', message_id: null, lease_owner: null });
  expect(await messageRowsOf(campaignId), 'the attempt’s messages row went with the hand-back').toEqual([]);

  // The next Monday: it goes out exactly once (the same Message-ID, a new attempt).
  clock += 6 * DAY;
  expect(await worker.runUntilIdle()).toBe(1);
  expect(fx.sentTo(SENDER, subject).get(person!.email)).toBe(1);
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sent']);
  expect(await messageRowsOf(campaignId)).toEqual(['sent']);
});

it('a group claim is judged at its latest member’s time: a send that reached the gate after the close is not claimed behind one from before it', async () => {
  // Claims that reach the gate while another runs wait and go together (group-commit.ts): the
  // first one's time is the oldest, seconds old on a busy database by the time the statement runs.
  const subject = `Window group ${Date.now()}`;
  const people = await fx.audience(2, { prefix: 'wgroup' });
  const campaignId = await fx.launched(mailbox.id, subject, people.map((p) => p.id), { sendingWindow: MONDAYS });
  const campaign = (await createCampaignsRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, campaignId))!;
  const ledger = createSendLedgerRepo(ctx.app.database.db);
  const closing = nextMondayNoon() + 12 * 3_600_000; // Tuesday 00:00 UTC
  const before = new Date(closing - 1_000);
  const after = new Date(closing + 1_000);
  const candidates = await ledger.reserveDue(campaign, 'worker-wg', 10, before, new Date(before.getTime() + 60_000));
  expect(candidates).toHaveLength(2);
  const input = (candidate: (typeof candidates)[number], now: Date) => ({
    campaign,
    mailbox,
    candidate,
    owner: 'worker-wg',
    messageRowId: crypto.randomUUID(),
    subject,
    now,
    leaseUntil: new Date(now.getTime() + 60_000),
  });
  const verdicts = await ledger.claimMany([input(candidates[0]!, before), input(candidates[1]!, after)]);
  expect(verdicts.map((v) => v.kind)).toEqual(['lost', 'lost']);
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['queued', 'queued']);
  expect(await messageRowsOf(campaignId)).toEqual([]);
});

