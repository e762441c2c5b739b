import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A hard bounce and an opt-out end the recipient's sequence when they are recorded, as a
 * person's reply does (reply-ends-sequence.test.ts), not when each later step comes due. Before,
 * sync suppressed the bounced address and the one-click POST wrote the opt-out, and nothing
 * else: the follow-up stayed `queued` until its day (`afterDays` later), the gate then skipped
 * it `suppressed`, and only then did the campaign complete — a campaign nobody was left to mail
 * showed `sending`, with follow-ups "queued", for days. Now the bounce's and the opt-out's own
 * transaction skips them with the gate's reason (`suppressed`: counts by reason as before, only
 * earlier) and completes the campaign when nothing is left. Only what the gate would refuse: a
 * topic's opt-out leaves another topic's follow-up queued, and a soft bounce below the limit
 * suppresses nothing, but the gate skips a later step after any bounce (`bounced`): that
 * follow-up too is skipped when the notice is synced; a delay ends nothing. Both databases. The
 * storms are guards, not regression tests: one-click opt-outs (or soft bounces) while group
 * claims and sent records run, checked on the server against its own deadlock count (the opt-out takes the address locks, then the
 * ledger's rows, then a completed campaign's row — the gate's order).
 *
 * The cases after it: an entry a user adds through the API (all, or a topic), a consent
 * withdrawn through the API (marketing follow-ups skipped `no_consent`, the gate's reason; a
 * transactional one stays) or by a CSV import's batch, and an opt-out that lands while step 0 is
 * in flight (its sent record queues the follow-up `skipped` `suppressed`). Before, each left the
 * follow-ups queued until their day, the campaign `sending`.
 */
const ctx = useAppWithOwner({ env: { BOUNCE_SOFT_LIMIT: '3' } });
const { fx, query, followUps, campaign, expectCountersRight, copiesReceived, sendBeside, recoveredAfter } = sequenceEndChecks(ctx);
const SENDER = `suppression-ends-${Date.now()}@acme.test`;
const DAY = 86_400_000;
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  // Marketing mail carries the sender's postal address (the consent cases launch marketing campaigns).
  expect((await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } })).status).toBe(200);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched campaign (transactional unless told) to `people`: step 0, then one follow-up `afterDays` (3) later. */
async function launchTwoSteps(subject: string, people: { id: string }[], topic?: string, afterDays = 3, kind: 'transactional' | 'marketing' = 'transactional') {
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind, mailboxId: mailbox.id, subject, text: 'Hello', contactIds: people.map((p) => p.id), steps: [{ afterDays, text: 'Just following up' }], ...(topic ? { topic } : {}) },
  });
  expect(created.status, created.text).toBe(201);
  const campaignId = created.body.id as string;
  const launched = await ctx.app.api('POST', `/api/campaigns/${campaignId}/launch`, { token: ctx.owner.token, json: {} });
  expect(launched.status, launched.text).toBe(200);
  return campaignId;
}

const sync = () => ctx.app.services.sync.syncMailbox(mailbox.id);
const sendDue = () => separateWorker(ctx.app, { concurrency: 2 }).tick();

/** Gmail's notice about step 0 to `person`, in the sender's mailbox (what sync reads next). */
async function noticeArrives(person: { email: string }, subject: string, kind: 'hard' | 'soft' | 'delay') {
  const original = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes(subject) && m.to.includes(person.email))!;
  await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind, form: 'report' });
}

/** The recipient's links from a campaign's mail: one-click unsubscribe and the preference center. */
async function linksOf(campaignId: string, person: { email: string }) {
  const [send] = await query<{ recipient_id: string }>(sql`select recipient_id from campaign_sends where campaign_id = ${campaignId}::uuid and email = ${person.email} limit 1`);
  const urls = createTrackingUrls(createTokenCodec(ctx.app.config.trackingSecrets), '');
  return { unsubscribe: urls.unsubscribe(send!.recipient_id, campaignId), preferences: urls.preferences(send!.recipient_id, campaignId) };
}
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

it('a hard bounce of step 0 skips the queued follow-up `suppressed` when sync records it, and the campaign completes at once', async () => {
  const subject = `Hard bounce ends ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'hb' });
  const campaignId = await launchTwoSteps(subject, [person!]);
  await sendDue();
  expect((await followUps(campaignId)).map((r) => r.status)).toEqual(['queued']);
  expect((await campaign(campaignId)).status).toBe('sending');

  await noticeArrives(person!, subject, 'hard');
  await sync();

  // No worker has run since: the bounce's own transaction did it, with the reason the gate gives a suppressed address.
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  const after = await campaign(campaignId);
  expect(after.status, 'nothing left to send: completed, not `sending` for 3 days').toBe('completed');
  expect(after.completedAt).not.toBeNull();
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { suppressed: 1 }, nextSendAt: null });
  await expectCountersRight(campaignId);
  await separateWorker(ctx.app, { concurrency: 1, now: () => new Date(Date.now() + 3 * DAY + 60_000) }).tick();
  expect(copiesReceived(person!, subject)).toBe(1);
});

it('a soft bounce below the limit ends that sequence at once (`bounced`, the gate\'s reason), suppressing nothing; a delay ends nothing', async () => {
  // The gate skips a later step after any bounce of an earlier one (`bounced`, gate-sql.ts), a
  // soft one too: left queued, the soft-bounced follow-up waited its `afterDays` to be skipped,
  // and the campaign showed it queued — and `sending` — until then (an attacker's finding).
  const subject = `Soft bounce ends ${Date.now()}`;
  const [full, slow] = await fx.audience(2, { prefix: 'sb' });
  const campaignId = await launchTwoSteps(subject, [full!, slow!]);
  await sendDue();

  await noticeArrives(full!, subject, 'soft');
  await noticeArrives(slow!, subject, 'delay');
  await sync();

  const [bounces] = await query<{ n: number }>(sql`select count(*)::int as n from mail_events where type in ('bounce', 'delay') and recipient in (${full!.email}, ${slow!.email})`);
  expect(bounces!.n, 'both notices were recorded').toBe(2);
  const [entries] = await query<{ n: number }>(sql`select count(*)::int as n from suppressions where lower(email) in (${full!.email}, ${slow!.email})`);
  expect(entries!.n, 'below the limit: nobody suppressed').toBe(0);
  expect((await followUps(campaignId)).map((r) => [r.email, r.status, r.skip_reason])).toEqual(
    [
      [full!.email, 'skipped', 'bounced'],
      [slow!.email, 'queued', null],
    ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
  );
  expect((await campaign(campaignId)).status).toBe('sending');
  await expectCountersRight(campaignId);

  // On its day the delayed recipient's follow-up goes; the campaign then completes.
  await separateWorker(ctx.app, { concurrency: 2, now: () => new Date(Date.now() + 3 * DAY + 60_000) }).tick();
  expect(copiesReceived(full!, subject)).toBe(1);
  expect(copiesReceived(slow!, subject)).toBe(2);
  expect((await campaign(campaignId)).status).toBe('completed');
  await expectCountersRight(campaignId);
});

it('a soft bounce of the only recipient left completes the campaign at once; the same notice read again changes nothing', async () => {
  const subject = `Soft bounce completes ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'sc' });
  const campaignId = await launchTwoSteps(subject, [person!]);
  await sendDue();
  await noticeArrives(person!, subject, 'soft');
  await sync();
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'bounced']]);
  const done = await campaign(campaignId);
  expect(done.status).toBe('completed');
  expect(done.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { bounced: 1 }, nextSendAt: null });
  await sync();
  await expectCountersRight(campaignId);
});

it('a one-click opt-out (RFC 8058) skips the queued follow-ups `suppressed` in the same transaction — of every campaign to the address — and completes the campaigns', async () => {
  const stamp = Date.now();
  const [person, other] = await fx.audience(2, { prefix: 'oc' });
  const first = await launchTwoSteps(`One-click A ${stamp}`, [person!]);
  // Another campaign's sequence to the same address, and one to someone else.
  const second = await launchTwoSteps(`One-click B ${stamp}`, [person!, other!]);
  await sendDue();
  await sendDue();
  expect([...(await followUps(first)), ...(await followUps(second))].map((r) => r.status)).toEqual(['queued', 'queued', 'queued']);

  const { unsubscribe } = await linksOf(first, person!);
  const optOut = await ctx.app.api('POST', unsubscribe, { body: 'List-Unsubscribe=One-Click', headers: FORM });
  expect(optOut.status, optOut.text).toBe(200);

  // Answered after the commit: no worker or sync ran since.
  expect((await followUps(first)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  const a = await campaign(first);
  expect(a.status).toBe('completed');
  expect(a.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { suppressed: 1 }, nextSendAt: null });
  // An `all` opt-out stops the address's mail from every campaign: the other campaign's follow-up to them too, not the other person's.
  const rows = new Map((await followUps(second)).map((r) => [r.email, r]));
  expect(rows.get(person!.email)).toMatchObject({ status: 'skipped', skip_reason: 'suppressed' });
  expect(rows.get(other!.email)).toMatchObject({ status: 'queued', skip_reason: null });
  expect((await campaign(second)).status).toBe('sending');
  for (const id of [first, second]) await expectCountersRight(id);
  await separateWorker(ctx.app, { concurrency: 2, now: () => new Date(Date.now() + 3 * DAY + 60_000) }).tick();
  expect(copiesReceived(person!, `One-click A ${stamp}`) + copiesReceived(person!, `One-click B ${stamp}`)).toBe(2);
  expect(copiesReceived(other!, `One-click B ${stamp}`)).toBe(2);
});

it('an opt-out committed while step 0 is in flight (Gmail accepted, not yet recorded): the follow-up the sent record writes is `skipped` `suppressed`, and the campaign completes', async () => {
  // The opt-out's skip finds no follow-up yet: the sent record writes it after. It was written
  // `queued` (only a reply made it `skipped`), waited its day for the gate to skip it, and the
  // campaign showed `sending` meanwhile (an attacker's finding). A link from any earlier mail does this.
  const subject = `Opt-out in flight ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'if' });
  const campaignId = await launchTwoSteps(subject, [person!]);
  const worker = separateWorker(ctx.app, {
    concurrency: 1,
    afterGmailAccepted: async () => {
      const res = await ctx.app.api('POST', (await linksOf(campaignId, person!)).unsubscribe, { body: 'List-Unsubscribe=One-Click', headers: FORM });
      expect(res.status, res.text).toBe(200);
    },
  });
  await worker.tick();
  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  expect((await campaign(campaignId)).status).toBe('completed');
  await expectCountersRight(campaignId);
});

it('a soft bounce recorded while step 0 awaits recovery: the follow-up recovery writes is `skipped` `bounced`', async () => {
  const subject = `Soft bounce before recovery ${Date.now()}`;
  const [person] = await fx.audience(1, { prefix: 'br' });
  const campaignId = await launchTwoSteps(subject, [person!]);
  await recoveredAfter(campaignId, person!, subject, 'bounced', async () => {
    await noticeArrives(person!, subject, 'soft');
    await sync();
  });
});

it('a topic’s opt-out in the preference center skips only that topic’s follow-ups: another topic’s, which the gate would send, stays queued', async () => {
  const stamp = Date.now();
  const [person] = await fx.audience(1, { prefix: 'tp' });
  const news = await launchTwoSteps(`Topic news ${stamp}`, [person!], 'news');
  const deals = await launchTwoSteps(`Topic deals ${stamp}`, [person!], 'deals');
  await sendDue();
  await sendDue();

  const { preferences } = await linksOf(news, person!);
  const fields: [string, string][] = [['action', 'save'], ['topics', 'news'], ['topics', 'deals'], ['subscribed', 'deals']];
  const saved = await ctx.app.api('POST', preferences, { body: new URLSearchParams(fields).toString(), headers: FORM });
  expect(saved.status, saved.text).toBe(200);

  expect((await followUps(news)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  expect((await campaign(news)).status).toBe('completed');
  expect((await followUps(deals)).map((r) => [r.status, r.skip_reason])).toEqual([['queued', null]]);
  expect((await campaign(deals)).status).toBe('sending');
  for (const id of [news, deals]) await expectCountersRight(id);
});

/**
 * What runs beside the worker in a storm: `act` once for each person, as soon as they have the
 * first step, pass after pass (`afterPass` ends each) until everyone is done or the worker stops.
 */
const onceEachWhenMailed = (audience: { email: string }[], subject: string, act: (person: { email: string }) => Promise<void>, afterPass?: () => Promise<unknown>) =>
  async (sending: () => boolean) => {
    const done = new Set<string>();
    while (done.size < audience.length) {
      for (const person of audience) {
        if (done.has(person.email) || copiesReceived(person, subject) === 0) continue;
        await act(person);
        done.add(person.email);
      }
      await afterPass?.();
      if (!sending()) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  };

it('one-click opt-outs while a worker sends both steps in rounds of four: no deadlock, every follow-up sent or skipped `suppressed`, the campaign completes', async () => {
  const subject = `Opt-out storm ${Date.now()}`;
  const audience = await fx.audience(12, { prefix: 'os' });
  // Follow-ups due at once: group claims and sent records of both steps run while the opt-outs commit.
  const campaignId = await launchTwoSteps(subject, audience, undefined, 0);
  const optOuts = onceEachWhenMailed(audience, subject, async (person) => {
    const res = await ctx.app.api('POST', (await linksOf(campaignId, person)).unsubscribe, { body: 'List-Unsubscribe=One-Click', headers: FORM });
    expect(res.status, res.text).toBe(200);
  });
  expect(await sendBeside(campaignId, 'suppressed', optOuts)).toHaveLength(audience.length);
}, 120_000);

it('an address a user suppresses through the API skips its queued follow-up `suppressed` in that request, and the campaign completes', async () => {
  const subject = `API entry ends ${Date.now()}`;
  const [person, other] = await fx.audience(2, { prefix: 'ap' });
  const campaignId = await launchTwoSteps(subject, [person!]);
  const news = await launchTwoSteps(`${subject} news`, [other!], 'news');
  await sendDue();
  await sendDue();

  const added = await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email: person!.email.toUpperCase(), reason: 'manual' } });
  expect(added.status, added.text).toBe(201);
  // A topic's entry for the other person: their `news` follow-up ends too (the web page adds through the same service).
  expect((await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email: other!.email, scope: 'topic:news' } })).status).toBe(201);

  expect((await followUps(campaignId)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  const after = await campaign(campaignId);
  expect(after.status, 'nothing left to send: completed at once').toBe('completed');
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { suppressed: 1 } });
  expect((await followUps(news)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed']]);
  expect((await campaign(news)).status).toBe('completed');
  for (const id of [campaignId, news]) await expectCountersRight(id);
});

it('a consent withdrawn through the API skips the contact’s marketing follow-ups `no_consent` at once; a transactional one, which the gate still sends, stays queued', async () => {
  const stamp = Date.now();
  const [person] = await fx.audience(1, { prefix: 'cw' });
  const marketing = await launchTwoSteps(`Consent marketing ${stamp}`, [person!], undefined, 3, 'marketing');
  const transactional = await launchTwoSteps(`Consent receipt ${stamp}`, [person!]);
  await sendDue();
  await sendDue();
  expect([...(await followUps(marketing)), ...(await followUps(transactional))].map((r) => r.status)).toEqual(['queued', 'queued']);

  const withdrawn = await ctx.app.api('POST', `/api/contacts/${person!.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
  expect(withdrawn.status, withdrawn.text).toBe(201);

  // The gate's reason for a marketing step without consent (P-10).
  expect((await followUps(marketing)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'no_consent']]);
  const after = await campaign(marketing);
  expect(after.status).toBe('completed');
  expect(after.progress).toMatchObject({ queued: 0, sending: 0, sent: 1, skipped: 1, skippedBecause: { no_consent: 1 } });
  expect((await followUps(transactional)).map((r) => [r.status, r.skip_reason])).toEqual([['queued', null]]);
  expect((await campaign(transactional)).status).toBe('sending');
  for (const id of [marketing, transactional]) await expectCountersRight(id);
});

it('a CSV import withdrawing consent skips the contacts’ marketing follow-ups `no_consent` in its batch; a contact whose record it does not change keeps theirs', async () => {
  const subject = `Import withdraws ${Date.now()}`;
  const [gone, left, stays] = await fx.audience(3, { prefix: 'iw' });
  const campaignId = await launchTwoSteps(subject, [gone!, left!, stays!], undefined, 3, 'marketing');
  await sendDue();

  const file = ['email,consent,consent_source', `${gone!.email},opted_out,crm sync`, `${left!.email},opted_out,crm sync`, `${stays!.email},opted_in,crm sync`].join('\n');
  const imported = await ctx.app.api('POST', '/api/contacts/import', { token: ctx.owner.token, body: file, headers: { 'content-type': 'text/csv' } });
  expect(imported.status, imported.text).toBe(200);

  const rows = new Map((await followUps(campaignId)).map((r) => [r.email, [r.status, r.skip_reason]]));
  expect(rows.get(gone!.email)).toEqual(['skipped', 'no_consent']);
  expect(rows.get(left!.email)).toEqual(['skipped', 'no_consent']);
  expect(rows.get(stays!.email)).toEqual(['queued', null]);
  expect((await campaign(campaignId)).status).toBe('sending');
  await expectCountersRight(campaignId);
});

it('soft bounces synced while a worker sends both steps in rounds of four: no deadlock, every follow-up sent or skipped `bounced`, the campaign completes', async () => {
  const subject = `Soft bounce storm ${Date.now()}`;
  const audience = await fx.audience(8, { prefix: 'ss' });
  // Follow-ups due at once: group claims and sent records of both steps run while the bounces commit.
  const campaignId = await launchTwoSteps(subject, audience, undefined, 0);
  const bounces = onceEachWhenMailed(audience, subject, (person) => noticeArrives(person, subject, 'soft'), sync);
  expect(await sendBeside(campaignId, 'bounced', bounces, sync)).toHaveLength(audience.length);
}, 120_000);
