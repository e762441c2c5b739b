import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, liftPause } from '../helpers/gmail.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';

/*
 * What ends a sequence — a suppression entry, a consent withdrawal, a bounce, the contact deleted
 * or moved to another address — recorded while a
 * step of it is in flight, where the recording's own skip (follow-ups.repo.ts skipFollowUps, of
 * *queued* steps) cannot reach: the claimed step handed back unsent (a 429 whose Retry-After
 * outlasts the pacer's wait, or recovery finding no copy), and the next step a sent record writes.
 * Both used to ask less than the gate: the requeue only whether the person replied, the sent
 * record not consent. The step went back (or was written) `queued`, the campaign `sending`, until
 * the gate skipped it on its day — minutes to hours after a 429, days for a follow-up. Now both
 * ask the gate's own verdict (gate-sql.ts refusedNowSql) and write it `skipped` with the gate's
 * reason, the campaign completing if nothing is left. A transactional campaign needs no consent:
 * its next step stays queued; a cancelled campaign's handed-back step is its sweep's (`cancelled`).
 * Both databases.
 */
const ctx = useAppWithOwner();
const { fx, query, followUps, campaign, expectCountersRight, copiesReceived } = sequenceEndChecks(ctx);
const SENDER = `refused-in-flight-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  // Marketing mail carries the sender's postal address.
  expect((await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } })).status).toBe(200);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched campaign to one new contact: step 0, then a follow-up due at once. */
async function launchTwoSteps(subject: string, kind: 'transactional' | 'marketing') {
  const [person] = await fx.audience(1, { prefix: 'rf' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { kind, steps: [{ afterDays: 0, text: 'Just following up' }] });
  return { campaignId, person: person! };
}

const stepRow = async (campaignId: string, step: number) =>
  (await query<{ status: string; skip_reason: string | null }>(
    sql`select status::text as status, skip_reason from campaign_sends where campaign_id = ${campaignId}::uuid and step = ${step}`,
  ))[0]!;

/**
 * Step `step` claimed, its Gmail request held 2 s and then refused 429 (Retry-After 10 min,
 * longer than the pacer waits in process: the worker hands it back); `meanwhile` runs while it
 * is claimed. Returns when the worker's pass is over.
 */
async function duringClaimThen429(campaignId: string, step: number, meanwhile: () => Promise<unknown>) {
  const worker = separateWorker(ctx.app, { concurrency: 1 });
  ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 2_000, endpoint: 'send', mailbox: SENDER, times: 1 });
  ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: 600, endpoint: 'send', mailbox: SENDER, times: 1 });
  try {
    const pass = worker.tick();
    await until(async () => (await stepRow(campaignId, step)).status === 'sending', `step ${step} is claimed`);
    await meanwhile();
    expect((await stepRow(campaignId, step)).status, 'in flight when it is recorded: its skip leaves it alone').toBe('sending');
    await pass;
  } finally {
    ctx.app.sandbox.control.clearFaults();
    await liftPause(ctx.app, mailbox.id); // the 429's pause of the mailbox
  }
}

/** Nothing left to send: the campaign completed, nothing queued or in flight, the counters equal a recount. */
async function expectCompleted(campaignId: string, skippedBecause: Record<string, number>) {
  const after = await campaign(campaignId);
  expect(after.status, 'completed, not `sending` with a step queued').toBe('completed');
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, nextSendAt: null, skippedBecause });
  await expectCountersRight(campaignId);
}

const suppress = async (email: string) => {
  const res = await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email, reason: 'manual' } });
  expect(res.status, res.text).toBe(201);
};
const withdrawConsent = async (contactId: string) => {
  const res = await ctx.app.api('POST', `/api/contacts/${contactId}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
  expect(res.status, res.text).toBe(201);
};

it('an address suppressed while the follow-up is claimed, then Gmail answers 429: the requeue writes it `skipped` `suppressed` and the campaign completes', async () => {
  const subject = `Suppressed during 429 ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
  await separateWorker(ctx.app, { concurrency: 1 }).tick(); // step 0 sent; the follow-up queued, due now
  expect((await stepRow(campaignId, 1)).status).toBe('queued');
  await duringClaimThen429(campaignId, 1, () => suppress(person.email));
  // Before: `queued`, due in 10 minutes, the campaign `sending` until the gate skipped it then.
  expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'skipped', skip_reason: 'suppressed' });
  await expectCompleted(campaignId, { suppressed: 1 });
  expect(copiesReceived(person, subject)).toBe(1);
}, 30_000);

it('a first step claimed when its address is suppressed, then 429: skipped `suppressed` at once, as the gate would at its next claim', async () => {
  // A first step claimed is being decided now; queued again it would only wait out Retry-After for that same verdict.
  const subject = `First step suppressed during 429 ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
  await duringClaimThen429(campaignId, 0, () => suppress(person.email));
  expect(await stepRow(campaignId, 0)).toMatchObject({ status: 'skipped', skip_reason: 'suppressed' });
  expect(await followUps(campaignId), 'a skipped first step writes no follow-up').toEqual([]);
  await expectCompleted(campaignId, { suppressed: 1 });
  expect(copiesReceived(person, subject)).toBe(0);
}, 30_000);

it('a soft bounce of step 0 recorded while the follow-up is claimed, then 429: the requeue writes it `skipped` `bounced`', async () => {
  const subject = `Bounce during 429 ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  await duringClaimThen429(campaignId, 1, async () => {
    const original = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes(subject) && m.to.includes(person.email))!;
    await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind: 'soft', form: 'report' });
    await ctx.app.services.sync.syncMailbox(mailbox.id);
  });
  expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'skipped', skip_reason: 'bounced' });
  await expectCompleted(campaignId, { bounced: 1 });
}, 30_000);

it('consent withdrawn while a marketing follow-up awaits recovery (Gmail answered 500), which finds no copy: skipped `no_consent`, not queued again', async () => {
  const subject = `Consent during recovery ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'marketing');
  const worker = separateWorker(ctx.app, { concurrency: 1, resolveDelayMs: 1 });
  await worker.tick();
  ctx.app.sandbox.control.injectFault({ kind: 'backendError', endpoint: 'send', mailbox: SENDER, times: 1 });
  await worker.tick();
  expect((await stepRow(campaignId, 1)).status).toBe('sending');
  await withdrawConsent(person.id);
  for (let look = 0; look < 3 && (await stepRow(campaignId, 1)).status === 'sending'; look += 1) {
    await new Promise((r) => setTimeout(r, 50));
    await worker.recoverStuck(new Date(Date.now() + 3_600_000));
  }
  expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'skipped', skip_reason: 'no_consent' });
  await expectCompleted(campaignId, { no_consent: 1 });
}, 30_000);

/*
 * The gate's standing reasons about the contact (gate-sql.ts standingRefusalArms): deleted, or
 * moved to another address since launch (the consent checked is the contact's, and the old
 * address may be someone else's now). Nothing skips a queued step when they happen — only the
 * gate's verdict does, at the claim, the requeue and the sent record. Transactional campaigns, so
 * that no consent rule stands behind them.
 */
const deleteContact = async (contactId: string) => {
  const res = await ctx.app.api('DELETE', `/api/contacts/${contactId}`, { token: ctx.owner.token });
  expect(res.status, res.text).toBe(204);
};
const moveContact = async (contactId: string) => {
  const res = await ctx.app.api('PATCH', `/api/contacts/${contactId}`, { token: ctx.owner.token, json: { email: `moved-${Date.now()}@contoso.test` } });
  expect(res.status, res.text).toBe(200);
};
const standing = [
  { what: 'the contact deleted', reason: 'contact_deleted', change: deleteContact },
  { what: "the contact's address changed", reason: 'address_changed', change: moveContact },
];

for (const { what, reason, change } of standing) {
  it(`${what} while the follow-up is claimed, then 429: the requeue writes it \`skipped\` \`${reason}\` and the campaign completes`, async () => {
    const subject = `${reason} during 429 ${Date.now()}`;
    const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
    await separateWorker(ctx.app, { concurrency: 1 }).tick();
    expect((await stepRow(campaignId, 1)).status).toBe('queued');
    await duringClaimThen429(campaignId, 1, () => change(person.id));
    expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'skipped', skip_reason: reason });
    await expectCompleted(campaignId, { [reason]: 1 });
    expect(copiesReceived(person, subject)).toBe(1);
  }, 30_000);
}

/** Step 0 sent with `meanwhile` run after Gmail accepted it, before its sent record. */
async function sendStepZeroWhile(meanwhile: () => Promise<void>) {
  await separateWorker(ctx.app, { concurrency: 1, afterGmailAccepted: meanwhile }).tick();
}

it('consent withdrawn while step 0 of a marketing campaign is in flight: the follow-up its sent record writes is `skipped` `no_consent`, and the campaign completes', async () => {
  const subject = `Consent in flight ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'marketing');
  await sendStepZeroWhile(() => withdrawConsent(person.id));
  // Before: `queued`, skipped `no_consent` by the gate only on its day, the campaign `sending` meanwhile.
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'no_consent']]);
  await expectCompleted(campaignId, { no_consent: 1 });
  expect(copiesReceived(person, subject)).toBe(1);
}, 30_000);

for (const { what, reason, change } of standing) {
  it(`${what} while step 0 is in flight: the follow-up its sent record writes is \`skipped\` \`${reason}\`, and the campaign completes`, async () => {
    const subject = `${reason} in flight ${Date.now()}`;
    const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
    await sendStepZeroWhile(() => change(person.id));
    expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', reason]]);
    await expectCompleted(campaignId, { [reason]: 1 });
    expect(copiesReceived(person, subject)).toBe(1);
  }, 30_000);
}

it('consent withdrawn while step 0 of a transactional campaign is in flight: the follow-up is queued (no consent needed) and goes', async () => {
  const subject = `Consent in flight, receipt ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
  await sendStepZeroWhile(() => withdrawConsent(person.id));
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['queued', null]]);
  expect((await campaign(campaignId)).status).toBe('sending');
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  expect(copiesReceived(person, subject)).toBe(2);
  await expectCompleted(campaignId, {});
  expect((await campaign(campaignId)).progress.skipped).toBe(0);
}, 30_000);

it('a cancelled campaign’s claimed step handed back after an opt-out goes back `queued`, for the cancel’s sweep: `cancelled`, not the verdict’s reason', async () => {
  // The verdict is asked only while the campaign may still send, as skipFollowUps asks it: a
  // cancelled campaign's unsent steps are all its sweep's, counted `cancelled`.
  const subject = `Cancelled during 429 ${Date.now()}`;
  const { campaignId, person } = await launchTwoSteps(subject, 'transactional');
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  await duringClaimThen429(campaignId, 1, async () => {
    await suppress(person.email);
    const res = await ctx.app.api('POST', `/api/campaigns/${campaignId}/cancel`, { token: ctx.owner.token, json: {} });
    expect(res.status, res.text).toBe(200);
  });
  expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'queued', skip_reason: null });
  await ctx.app.services.cancelledSends.sweep();
  expect(await stepRow(campaignId, 1)).toMatchObject({ status: 'skipped', skip_reason: 'cancelled' });
  expect((await campaign(campaignId)).status).toBe('cancelled');
  await expectCountersRight(campaignId);
}, 30_000);
