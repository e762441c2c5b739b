import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import type { Db } from '../../src/db/connect.js';
import { createSignals } from '../../src/gmail/signals.js';
import { createSyncRepo } from '../../src/gmail/sync.repo.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createSuppressionListRepo } from '../../src/suppression/suppression.repo.js';
import { createSuppressionService } from '../../src/suppression/suppression.service.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { twoCounterSlots, waitForLockWaiters } from '../helpers/lock-waiters.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A bounce notice naming sends of two campaigns (signals.ts recordBounces) skipped each
 * recipient's follow-up and asked its campaign's completion (completeIfDone) one at a time, in
 * the notice's order — each question taking that campaign's completion lock until the transaction
 * ended. Two notices synced at once (two mailboxes' syncs, or a notice and a preference-center
 * form) naming the same two campaigns in opposite orders each held one campaign's lock and waited
 * for the other's: a deadlock (40P01), one transaction rolled back. Now the skips of a unit of work
 * ask completion once, at its end, for all the campaigns they touched, in key order
 * (follow-ups.repo.ts oneCompletionQuestion). The same for a preference-center form opting out of
 * two topics (suppression.service.ts savePreferences: an entry, and its skip, per topic, in the
 * form's order), and for an opt-out through a link whose entry and consent records end sequences
 * in two campaigns (unsubscribe: a contact whose address changed away from the opted-out one).
 *
 * Deterministic with sessions of the test's own: a third session holds the row of the second
 * notice's (or form's) last follow-up, so that it stops after its first campaign's skip; the first
 * runs meanwhile (and, unfixed, waits for that campaign's lock, holding the other's); then the row
 * is let go. The two notices run on different counter slots (`pg_backend_pid() % 32`): on one
 * slot they would wait for each other's counter rows, whatever the completion locks did. Server
 * only: PGlite runs one transaction at a time.
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const { fx, query, followUps, campaign, expectCountersRight, deadlocks } = sequenceEndChecks(ctx);
const SENDER = `completion-order-${Date.now()}@acme.test`;
let mailbox: { id: string; email: string };

const databaseUrl = () => (ctx.app.database as unknown as { url: string }).url;

beforeAll(async () => {
  if (!onServer) return;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
}, 60_000);

/** The step-0 message a campaign sent to `email`, as a bounce's match names it. */
async function sentTo(campaignId: string, email: string) {
  const [row] = await query<{ id: string; rfc822_message_id: string; at: Date }>(sql`
    select m.id, m.rfc822_message_id, m.at from campaign_sends s join messages m on m.id = s.message_id
    where s.campaign_id = ${campaignId}::uuid and s.step = 0 and s.email = ${email}`);
  return { id: String(row!.id), rfc822MessageId: row!.rfc822_message_id, toAddresses: [email], ccAddresses: [], bccAddresses: [], at: row!.at };
}

/**
 * Two sending campaigns from the mailbox, each with the follow-ups of `people` queued (each
 * person in both when `both`, else two per campaign), `low` the one whose completion lock sorts
 * first (completeIfDone: hashtext of its id); each campaign's follow-up addresses, in order.
 */
async function twoCampaigns(people: { id: string }[], both: boolean, topics: [string, string] | [undefined, undefined] = [undefined, undefined]) {
  const subject = `Completion order ${Date.now()}`;
  const kind = topics[0] ? 'marketing' : 'transactional';
  const launch = (i: number, who: { id: string }[]) =>
    fx.launched(mailbox.id, `${subject} ${i}`, who.map((p) => p.id), { kind, steps: [{ afterDays: 3, text: 'Just following up' }], ...(topics[i] ? { topic: topics[i] } : {}) });
  const ids = [await launch(0, both ? people : people.slice(0, 2)), await launch(1, both ? people : people.slice(2))];
  await separateWorker(ctx.app, { concurrency: 4 }).tick();
  for (const id of ids) expect((await followUps(id)).map((r) => r.status)).toEqual(['queued', 'queued']);
  const [order] = await query<{ swapped: boolean }>(sql`select hashtext(${ids[0]}::text) > hashtext(${ids[1]}::text) as swapped`);
  const [low, high] = order!.swapped ? [1, 0] : [0, 1];
  const addresses = async (id: string) => (await followUps(id)).map((r) => r.email);
  return {
    ids,
    low: { id: ids[low]!, topic: topics[low], to: await addresses(ids[low]!) },
    high: { id: ids[high]!, topic: topics[high], to: await addresses(ids[high]!) },
  };
}

/** What a unit of work on its session came to: `ok`, or its error's SQLSTATE (drizzle wraps the driver's error as its cause). */
const outcome = (work: Promise<unknown>) => work.then(() => 'ok', (error: { code?: string; cause?: { code?: string } }) => error.code ?? error.cause?.code ?? String(error));

/**
 * `second` runs on its session until it meets `held` (a follow-up row a third session holds), after
 * its skip of the low campaign; `first`, on another counter slot, runs meanwhile until it finishes
 * or waits for a lock (unfixed: the low campaign's completion lock, holding the high one's); then
 * the row is let go. Both outcomes, and the deadlocks the server detected meanwhile (a form's
 * transaction lost to one runs again: againAfterConcurrencyFailure).
 */
async function opposed(held: { campaignId: string; email: string }, first: (client: pg.Client) => Promise<unknown>, second: (client: pg.Client) => Promise<unknown>) {
  const { first: x, second: y, third: holder, opened } = await twoCounterSlots(databaseUrl());
  const before = await deadlocks();
  try {
    await holder.query('begin');
    await holder.query(`select id from campaign_sends where campaign_id = $1 and step = 1 and email = $2 for update`, [held.campaignId, held.email]);
    const secondDone = outcome(second(y));
    await waitForLockWaiters(holder, 1);
    let finished = false;
    const firstDone = outcome(first(x)).finally(() => (finished = true));
    // The first unit finished, or waits beside the second.
    await waitForLockWaiters(holder, 2, { orUntil: () => finished, timeoutMs: 15_000 });
    await holder.query('commit');
    const outcomes = { first: await firstDone, second: await secondDone };
    await new Promise((r) => setTimeout(r, 1_500)); // backends flush their statistics at most once a second
    return { ...outcomes, deadlocks: (await deadlocks()) - before };
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await Promise.all(opened.map((c) => c.end()));
  }
}

/** Every follow-up of both campaigns skipped with `reason`, both completed (no worker has run since), the counters right. */
async function expectBothCompleted(ids: string[], reason: string) {
  for (const id of ids) {
    expect((await followUps(id)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', reason], ['skipped', reason]]);
    expect((await campaign(id)).status).toBe('completed');
    await expectCountersRight(id);
  }
}

const hasher = () => createAddressHasher(ctx.app.config.privacy.suppressionHashKey);

/** The recipient's side of the suppression service (their links' opt-out and form) on `client`. */
function recipientPages(client: pg.Client) {
  return createSuppressionService({
    repo: createSuppressionListRepo(drizzle(client) as unknown as Db, hasher()),
    codec: createTokenCodec(ctx.app.config.trackingSecrets),
    policyVersion: ctx.app.config.policyVersion,
    // Undoing an opt-out is mailed; these tests undo nothing, so nothing is mailed.
    resubscribe: { jwt: ctx.app.config.jwt, mailer: undefined as never, throttle: undefined as never, publicBaseUrl: '' },
  });
}

/** The token of the links in the mail `campaignId` sent to `email` (its recipient row, that campaign). */
async function linkOf(campaignId: string, email: string): Promise<string> {
  const [send] = await query<{ recipient_id: string }>(sql`select recipient_id from campaign_sends where campaign_id = ${campaignId}::uuid and email = ${email} limit 1`);
  return createTokenCodec(ctx.app.config.trackingSecrets).encode({ kind: 'unsubscribe', recipientId: String(send!.recipient_id), campaignId });
}

it.runIf(onServer)('two bounce notices naming sends of the same two campaigns in opposite orders: both commit, no deadlock (server)', async () => {
  const { ids, low, high } = await twoCampaigns(await fx.audience(4, { prefix: 'clo' }), false);
  const signals = createSignals(ctx.app.config.signals);
  const hard = (address: string) => ({ address, action: 'failed' as const, status: '5.1.1', class: 'hard' as const, reason: 'unknown_user' as const });
  /** One notice, synced on `client`: a hard bounce of each (campaign, address), in this order. */
  const notice = (named: [string, string][]) => async (client: pg.Client) => {
    const matches = await Promise.all(named.map(async ([id, address]) => ({ original: await sentTo(id, address), recipients: [hard(address)] })));
    return createSyncRepo(drizzle(client) as unknown as Db, hasher()).transaction((tx) =>
      signals.recordBounces(tx, { workspaceId: ctx.owner.workspaceId, matches, sourceGmailMessageId: `dsn-${named[0]![1]}`, format: 'rfc3464', syncedMessageId: matches[0]!.original.id, at: new Date() }),
    );
  };
  // The first notice names the high campaign first; the second, the low one.
  const outcomes = await opposed(
    { campaignId: high.id, email: high.to[1]! },
    notice([[high.id, high.to[0]!], [low.id, low.to[0]!]]),
    notice([[low.id, low.to[1]!], [high.id, high.to[1]!]]),
  );
  expect(outcomes).toEqual({ first: 'ok', second: 'ok', deadlocks: 0 });
  await expectBothCompleted(ids, 'suppressed');
}, 90_000);

it.runIf(onServer)('two preference-center forms opting out of the same two topics in opposite orders: both commit, no deadlock (server)', async () => {
  // Marketing mail carries the sender's postal address.
  expect((await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } })).status).toBe(200);
  const people = await fx.audience(2, { prefix: 'clp' });
  const { ids, low, high } = await twoCampaigns(people, true, ['news', 'deals']);
  /** The form of the person at `email` (their link from the low campaign), opting out of these topics, in this order, on `client`. */
  const form = (email: string, topics: string[]) => async (client: pg.Client) =>
    recipientPages(client).savePreferences(await linkOf(low.id, email), { action: 'save', topics, subscribed: [] });
  // Both people are in both campaigns; the first form names the high campaign's topic first.
  const [a, b] = low.to;
  const outcomes = await opposed({ campaignId: high.id, email: b! }, form(a!, [high.topic!, low.topic!]), form(b!, [low.topic!, high.topic!]));
  expect(outcomes).toEqual({ first: 'ok', second: 'ok', deadlocks: 0 });
  await expectBothCompleted(ids, 'suppressed');
}, 90_000);

/*
 * An opt-out through a link (suppression.service.ts unsubscribe) skips twice in its transaction:
 * the address's entry ends the address's sequences (suppressed), and the consent it withdraws ends
 * those of the contacts it reaches (no_consent). Those reach other campaigns only for a contact whose
 * address changed away from the opted-out one (movedContacts): its sends before the move are under
 * the old address (the entry's skip), its sends since under the new one (the consent's skip). So
 * one opt-out asks the completion of the campaign that mailed the old address and of the one that
 * mailed the new address — unwrapped, in that order, one question each.
 */
it.runIf(onServer)('an opt-out whose entry and consent end sequences in two campaigns, beside an opt-out asking both in key order: both commit, no deadlock (server)', async () => {
  expect((await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } })).status).toBe(200);
  const [moving, staying] = await fx.audience(2, { prefix: 'clu' });
  const subject = `Completion order opt-out ${Date.now()}`;
  const drafts: string[] = [];
  for (const i of [0, 1]) {
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: `${subject} ${i}`, kind: 'marketing', mailboxId: mailbox.id, subject: `${subject} ${i}`, text: 'Hello', contactIds: [moving!.id, staying!.id], steps: [{ afterDays: 3, text: 'Just following up' }] },
    });
    expect(draft.status, draft.text).toBe(201);
    drafts.push(draft.body.id as string);
  }
  // Roles by key order, so that the unwrapped opt-out asks out of it: the campaign that mailed the
  // old address sorts last (its question comes first), the one that mailed the new address first.
  const [order] = await query<{ swapped: boolean }>(sql`select hashtext(${drafts[0]}::text) > hashtext(${drafts[1]}::text) as swapped`);
  const [low, high] = order!.swapped ? [drafts[1]!, drafts[0]!] : [drafts[0]!, drafts[1]!];
  const launchAndSend = async (id: string) => {
    const launched = await ctx.app.api('POST', `/api/campaigns/${id}/launch`, { token: ctx.owner.token, json: {} });
    expect(launched.status, launched.text).toBe(200);
    await separateWorker(ctx.app, { concurrency: 4 }).tick();
    expect((await followUps(id)).map((r) => r.status)).toEqual(['queued', 'queued']);
  };
  await launchAndSend(high);
  const newAddress = `clu-moved-${Date.now()}@contoso.test`;
  ctx.app.sandbox.control.createMailbox({ email: newAddress });
  const moved = await ctx.app.api('PATCH', `/api/contacts/${moving!.id}`, { token: ctx.owner.token, json: { email: newAddress } });
  expect(moved.status, moved.text).toBe(200);
  await launchAndSend(low);

  const optOut = (token: Promise<string>) => async (client: pg.Client) => recipientPages(client).unsubscribe(await token);
  // The moved person's opt-out from the old address's mail stops at their new address's follow-up
  // (held), its old address's already skipped; the other person's opt-out skips theirs in both
  // campaigns in one statement and asks both at once, in key order: low, then high.
  const outcomes = await opposed({ campaignId: low, email: newAddress }, optOut(linkOf(low, staying!.email)), optOut(linkOf(high, moving!.email)));
  expect(outcomes).toEqual({ first: 'ok', second: 'ok', deadlocks: 0 });

  const skipped = async (id: string) => Object.fromEntries((await followUps(id)).map((r) => [r.email, [r.status, r.skip_reason]]));
  expect(await skipped(high)).toEqual({ [moving!.email]: ['skipped', 'suppressed'], [staying!.email]: ['skipped', 'suppressed'] });
  expect(await skipped(low)).toEqual({ [newAddress]: ['skipped', 'no_consent'], [staying!.email]: ['skipped', 'suppressed'] });
  for (const id of [low, high]) {
    expect((await campaign(id)).status).toBe('completed');
    await expectCountersRight(id);
  }
}, 90_000);
