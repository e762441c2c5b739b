import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import type { Db } from '../../src/db/connect.js';
import { createSignals } from '../../src/gmail/signals.js';
import { createSyncRepo } from '../../src/gmail/sync.repo.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
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
 * (follow-ups.repo.ts oneCompletionQuestion).
 *
 * Deterministic with sessions of the test's own: a third session holds the row of the second
 * notice's last follow-up, so that notice stops after its first campaign's skip; the first notice
 * runs meanwhile (and, unfixed, waits for that campaign's lock, holding the other's); then the row
 * is let go. The two notices run on different counter slots (`pg_backend_pid() % 32`): on one
 * slot they would wait for each other's counter rows, whatever the completion locks did. Server
 * only: PGlite runs one transaction at a time.
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const { fx, query, followUps, campaign, expectCountersRight } = sequenceEndChecks(ctx);
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

it.runIf(onServer)('two bounce notices naming sends of the same two campaigns in opposite orders: both commit, no deadlock (server)', async () => {
  const people = await fx.audience(4, { prefix: 'clo' });
  const subject = `Completion order ${Date.now()}`;
  const launch = (name: string, who: { id: string }[]) => fx.launched(mailbox.id, `${subject} ${name}`, who.map((p) => p.id), { kind: 'transactional', steps: [{ afterDays: 3, text: 'Just following up' }] });
  const ids = [await launch('one', people.slice(0, 2)), await launch('two', people.slice(2))];
  await separateWorker(ctx.app, { concurrency: 4 }).tick();
  for (const id of ids) expect((await followUps(id)).map((r) => r.status)).toEqual(['queued', 'queued']);
  // `low` is the campaign whose completion lock sorts first (completeIfDone: hashtext of its id).
  const [order] = await query<{ swapped: boolean }>(sql`select hashtext(${ids[0]}::text) > hashtext(${ids[1]}::text) as swapped`);
  const [low, high] = order!.swapped ? [ids[1]!, ids[0]!] : [ids[0]!, ids[1]!];
  const recipients = async (id: string) => (await followUps(id)).map((r) => r.email);
  const [[lowA, lowB], [highA, highB]] = [await recipients(low), await recipients(high)];

  const signals = createSignals(ctx.app.config.signals);
  const hasher = createAddressHasher(ctx.app.config.privacy.suppressionHashKey);
  const hard = (address: string) => ({ address, action: 'failed' as const, status: '5.1.1', class: 'hard' as const, reason: 'unknown_user' as const });
  /** One notice, synced on `client`: a hard bounce of each (campaign, address), in this order. */
  const notice = (client: pg.Client, named: [string, string][]) =>
    (async () => {
      const matches = await Promise.all(named.map(async ([id, address]) => ({ original: await sentTo(id, address!), recipients: [hard(address!)] })));
      return createSyncRepo(drizzle(client) as unknown as Db, hasher).transaction((tx) =>
        signals.recordBounces(tx, { workspaceId: ctx.owner.workspaceId, matches, sourceGmailMessageId: `dsn-${named[0]![1]}`, format: 'rfc3464', syncedMessageId: matches[0]!.original.id, at: new Date() }),
      );
    })().then(() => 'ok', (error: { code?: string; cause?: { code?: string } }) => error.code ?? error.cause?.code ?? String(error));

  const { first: x, second: y, third: holder, opened } = await twoCounterSlots(databaseUrl());
  try {
    // The second notice's last follow-up (the high campaign's) is held, so that notice stops there…
    await holder.query('begin');
    await holder.query(`select id from campaign_sends where campaign_id = $1 and step = 1 and email = $2 for update`, [high, highB]);
    const second = notice(y, [[low, lowB!], [high, highB!]]);
    await waitForLockWaiters(holder, 1);
    // …after its skip of the low campaign; the first notice names the high campaign first.
    let finished = false;
    const first = notice(x, [[high, highA!], [low, lowA!]]).finally(() => (finished = true));
    const deadline = Date.now() + 15_000;
    while (!finished) {
      await holder.query('select pg_stat_clear_snapshot()');
      const { rows } = await holder.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`);
      if (rows[0].n >= 2) break; // unfixed: it waits for the low campaign's completion lock, holding the high one's
      if (Date.now() > deadline) throw new Error('the first notice neither finished nor waited');
      await new Promise((r) => setTimeout(r, 20));
    }
    await holder.query('commit');
    expect({ first: await first, second: await second }).toEqual({ first: 'ok', second: 'ok' });
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await Promise.all(opened.map((c) => c.end()));
  }
  for (const id of ids) {
    expect((await followUps(id)).map((r) => [r.status, r.skip_reason])).toEqual([['skipped', 'suppressed'], ['skipped', 'suppressed']]);
    // Nothing left, and no worker has run since: completed by whichever notice committed second.
    expect((await campaign(id)).status).toBe('completed');
    await expectCountersRight(id);
  }
}, 90_000);
