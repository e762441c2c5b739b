import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { VirtualClock, busiestMinute, createMailboxes, rateLimited, usePacerStores } from '../../test/helpers/pacer-harness.js';
import type { GmailError } from './gmail-errors.js';
import { createSqlLimitStore } from './limit-store.js';
import { GMAIL_QUOTA_UNITS, MailboxPacer } from './pacer.js';

/* The pacer's limits on virtual time, on both stores (see test/helpers/pacer-harness.ts); retries: pacer-retries.test.ts. */

const harness = usePacerStores();

describe('GMAIL_QUOTA_UNITS', () => {
  it('lists what Gmail charges per method', () => {
    expect(GMAIL_QUOTA_UNITS).toEqual({ send: 100, get: 5, list: 5, history: 2, profile: 1, watch: 100, stop: 50, labels: 1 });
  });
});

describe.each(harness.stores)('MailboxPacer quota ($name)', (store) => {
  it('starts with a burst, not a full minute, then refills so that no 60 s ever holds more than the quota', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer();
    const [mbx] = await store.mailboxes(1);
    const sentAt: number[] = [];
    await clock.drive(
      Promise.all(Array.from({ length: 200 }, () => pacer.run(mbx!, GMAIL_QUOTA_UNITS.send, async () => sentAt.push(clock.time)))),
    );
    expect(sentAt).toHaveLength(200);
    // The burst is a fifteenth of the minute (1,000 units: 10 sends); the other 14,000 refill over the minute.
    expect(sentAt.slice(0, 10).every((t) => t === 0)).toBe(true);
    expect(sentAt[10]).toBe(429); // 100 units at 14,000 a minute: 428.6 ms
    expect(busiestMinute(sentAt.map((at) => ({ at, units: 100 })))).toBeLessThanOrEqual(15_000);
    expect(busiestMinute(sentAt.map((at) => ({ at, units: 100 })))).toBeGreaterThanOrEqual(14_800);
  });

  it('holds the burst again after a quiet spell, never more', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer();
    const [mbx] = await store.mailboxes(1);
    const burst = () => Promise.all(Array.from({ length: 10 }, () => pacer.run(mbx!, 100, async () => clock.time)));
    await clock.drive(burst());
    await clock.drive(clock.at(10 * 60_000, async () => undefined));
    const second = await clock.drive(burst());
    expect(new Set(second)).toEqual(new Set([10 * 60_000]));
    const extra = await clock.drive(pacer.run(mbx!, 100, async () => clock.time));
    expect(extra).toBe(10 * 60_000 + 429);
  });

  it('never overspends when many calls of different sizes run at once', async () => {
    const clock = new VirtualClock(store.make);
    const unitsPerMinute = 1_000;
    const pacer = clock.pacer({ unitsPerMinute, burstUnits: 100 });
    const [mbx] = await store.mailboxes(1);
    const spends: { at: number; units: number; order: number }[] = [];
    const sizes = Array.from({ length: 60 }, (_, i) => [GMAIL_QUOTA_UNITS.send, GMAIL_QUOTA_UNITS.get, GMAIL_QUOTA_UNITS.history, 50][i % 4]!);
    await clock.drive(
      Promise.all(sizes.map((units, order) => pacer.run(mbx!, units, async () => void spends.push({ at: clock.time, units, order })))),
    );
    let spent = 0;
    for (const spend of spends) {
      spent += spend.units;
      expect(spent).toBeLessThanOrEqual(100 + (spend.at * (unitsPerMinute - 100)) / 60_000 + 1e-9);
    }
    expect(busiestMinute(spends)).toBeLessThanOrEqual(unitsPerMinute);
    // First come, first served: a big send is not starved by the small reads behind it.
    expect(spends.map((s) => s.order)).toEqual(sizes.map((_, i) => i));
  });

  it('keeps several processes sharing the store inside one quota together', async () => {
    const clock = new VirtualClock(store.make);
    const shared = clock.store();
    const processes = [clock.pacer({ store: shared }), clock.pacer({ store: shared }), clock.pacer({ store: shared })];
    const [mbx] = await store.mailboxes(1);
    const sentAt: number[] = [];
    await clock.drive(
      Promise.all(processes.flatMap((pacer) => Array.from({ length: 70 }, () => pacer.run(mbx!, 100, async () => void sentAt.push(clock.time))))),
    );
    expect(sentAt).toHaveLength(210);
    // Each process on its own would have spent a burst and a minute: 3 × 150 sends in the first minute.
    expect(busiestMinute(sentAt.map((at) => ({ at, units: 100 })))).toBeLessThanOrEqual(15_000);
  });

  it('paces sends to sendsPerMinute, and only sends', async () => {
    const clock = new VirtualClock(store.make);
    const shared = clock.store();
    const [a, b] = [clock.pacer({ store: shared, sendsPerMinute: 30 }), clock.pacer({ store: shared, sendsPerMinute: 30 })];
    const [mbx] = await store.mailboxes(1);
    const sends: number[] = [];
    const reads: number[] = [];
    await clock.drive(
      Promise.all([
        ...Array.from({ length: 5 }, () => a.run(mbx!, 100, async () => void sends.push(clock.time), { send: true })),
        ...Array.from({ length: 5 }, () => b.run(mbx!, 100, async () => void sends.push(clock.time), { send: true })),
        ...Array.from({ length: 20 }, () => b.run(mbx!, 5, async () => void reads.push(clock.time))),
      ]),
    );
    sends.sort((x, y) => x - y);
    // 30 a minute: one every 2 s, across both processes.
    for (let i = 1; i < sends.length; i++) expect(sends[i]! - sends[i - 1]!).toBeGreaterThanOrEqual(2_000);
    expect(sends.at(-1)).toBeLessThan(9 * 2_000 + 100);
    // Reads are not held back by sends waiting for the pace, in either process.
    expect(reads).toHaveLength(20);
    expect(reads.every((t) => t < 2_000)).toBe(true);
  });

  it('keeps mailboxes apart', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ unitsPerMinute: 200, burstUnits: 100 });
    const [a, b] = await store.mailboxes(2);
    await clock.drive(pacer.run(a!, 100, async () => undefined));
    expect(await clock.drive(pacer.run(b!, 100, async () => clock.time))).toBe(0);
    expect(await clock.drive(pacer.run(a!, 100, async () => clock.time))).toBe(60_000);
  });

  it('lifts a pause on reconnect, but what was spent stays spent', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ unitsPerMinute: 200, burstUnits: 100 });
    const [a] = await store.mailboxes(1);
    await clock.drive(pacer.run(a!, 100, async () => undefined));
    await clock.drive(pacer.run(a!, 1, async () => { throw rateLimited(30); }).catch(() => undefined));
    const failedAt = clock.time;
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBe(failedAt + 30_000);
    await clock.drive(pacer.forget(a!));
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBeUndefined();
    // The bucket is empty (the pause emptied it): 10 units refill in 6 s at 100 a minute, no 30 s wait.
    expect(await clock.drive(pacer.run(a!, 10, async () => clock.time))).toBe(failedAt + 6_000);
  });

  it('refuses a call that costs more than the burst', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ unitsPerMinute: 100, burstUnits: 50 });
    await expect(pacer.run('a', 51, async () => 'never')).rejects.toThrow(RangeError);
    await expect(pacer.run('a', -1, async () => 'never')).rejects.toThrow(RangeError);
    expect(() => new MailboxPacer({ unitsPerMinute: 100, burstUnits: 100 })).toThrow(RangeError);
  });

  it('waits with real timers when no clock is injected', async () => {
    const [a] = await store.mailboxes(1);
    const pacer = new MailboxPacer({ unitsPerMinute: 6_000, store: store.realTime() });
    await pacer.run(a!, 400, async () => undefined);
    const started = Date.now();
    await pacer.run(a!, 5, async () => undefined);
    // A burst of 400 units, then 5,600 a minute: 5 units take 54 ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
  });
});

describe('MailboxPacer daily budget (SQL store: it counts the sent messages)', () => {
  const rows = <T>(result: unknown) => (result as { rows: T[] }).rows;
  async function budgetMailbox(budget: number, sentEarlier: number) {
    const [mailboxId] = await createMailboxes(harness.db(), 1, budget);
    const [{ workspace_id: workspaceId }] = rows<{ workspace_id: string }>(
      await harness.db().db.execute(sql`select workspace_id from mailboxes where id = ${mailboxId}::uuid`),
    ) as [{ workspace_id: string }];
    await harness.db().db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
      select ${workspaceId}::uuid, ${mailboxId}::uuid, 'outbound', 'sent', 'me@example.com', '{x@example.com}' from generate_series(1, ${sentEarlier}::int)`);
    return { mailboxId: mailboxId!, workspaceId };
  }

  /**
   * A send as both callers make it: the pacer grants first, then — inside the call, as the gate
   * does — the send is claimed (its `sending` row), then Gmail is called, then it is `sent`.
   */
  function sendAsTheGateDoes(clock: VirtualClock, pacer: MailboxPacer, mailbox: { mailboxId: string; workspaceId: string }, gmail: () => void) {
    return pacer
      .run(
        mailbox.mailboxId,
        100,
        async () => {
          const [{ id }] = rows<{ id: string }>(
            await clock.work(() =>
              harness.db().db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
                values (${mailbox.workspaceId}::uuid, ${mailbox.mailboxId}::uuid, 'outbound', 'sending', 'me@example.com', '{y@example.com}') returning id`),
            ),
          ) as [{ id: string }];
          gmail();
          await clock.work(() => harness.db().db.execute(sql`update messages set status = 'sent' where id = ${id}::uuid`));
        },
        { send: true },
      )
      .then(
        () => 'sent',
        (error: GmailError) => `${error.kind}/${error.reason}`,
      );
  }

  /** Two processes sharing the SQL store on one virtual clock; no pace, so each asks for its waiting sends as one group. */
  function twoProcesses() {
    const clock = new VirtualClock(() => createSqlLimitStore(harness.db().db));
    const shared = clock.store();
    return { clock, processes: [clock.pacer({ store: shared }), clock.pacer({ store: shared })] };
  }

  it('lets a mailbox send exactly its budget across processes, then refuses sends (not reads) without calling Gmail', async () => {
    const { clock, processes } = twoProcesses();
    const mailbox = await budgetMailbox(5, 2);
    let calls = 0;
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) outcomes.push(await clock.drive(sendAsTheGateDoes(clock, processes[i % 2]!, mailbox, () => void calls++)));
    expect(outcomes).toEqual(['sent', 'sent', 'sent', 'rate_limited/daily_budget', 'rate_limited/daily_budget']);
    expect(calls).toBe(3);
    expect(await clock.drive(processes[0]!.run(mailbox.mailboxId, 5, async () => 'read'))).toBe('read');
  });

  it('grants sends asking together no more than the budget, in one process or several at once', async () => {
    const { clock, processes } = twoProcesses();
    const mailbox = await budgetMailbox(4, 1);
    let calls = 0;
    const outcomes = await clock.drive(
      Promise.all(Array.from({ length: 8 }, (_, i) => sendAsTheGateDoes(clock, processes[i % 2]!, mailbox, () => void calls++))),
    );
    expect(calls).toBe(3);
    expect(outcomes.filter((o) => o === 'sent')).toHaveLength(3);
    expect(outcomes.filter((o) => o === 'rate_limited/daily_budget')).toHaveLength(5);
  });

  it('recounts only once the last grant could be claimed, and a retry of a claimed send takes no second unit', async () => {
    const store = createSqlLimitStore(harness.db().db);
    const policy = { unitsPerMinute: 15_000, burstUnits: 1_000, sendsPerMinute: 1e9, budgetRecountMs: 0, budgetClaimGraceMs: 10_000 };
    const mailbox = await budgetMailbox(1, 0);
    expect(await store.take(mailbox.mailboxId, 100, true, policy, 0, 1)).toEqual({ kind: 'granted', count: 1 });
    // The budget is used up by a grant whose claim may not show yet: a new send waits for it to.
    expect(await store.take(mailbox.mailboxId, 100, true, policy, 1_000, 1)).toEqual({ kind: 'wait', waitMs: 9_000 });
    // The granted send, claimed, retries after a 429: it holds its unit already.
    expect(await store.take(mailbox.mailboxId, 100, true, policy, 2_000, 1, true)).toEqual({ kind: 'granted', count: 1 });
    await harness.db().db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
      values (${mailbox.workspaceId}::uuid, ${mailbox.mailboxId}::uuid, 'outbound', 'sent', 'me@example.com', '{y@example.com}')`);
    expect(await store.take(mailbox.mailboxId, 100, true, policy, 10_000, 1)).toEqual({ kind: 'budget_exhausted' });
  });

  it('still answers processes of earlier releases (the 8- and 9-argument versions) during a rolling deploy, as new sends', async () => {
    const mailbox = await budgetMailbox(2, 0);
    const db = harness.db().db;
    const args = sql`${mailbox.mailboxId}::uuid, 100::double precision, true, 15000::double precision, 1000::double precision, 1e9::double precision, 0::double precision`;
    const [nine] = rows<{ outcome: string; granted: number }>(await db.execute(sql`select outcome, granted from mailbox_take_units(${args}, to_timestamp(0), 5)`));
    // Two granted of five asked: the budget, none of it counted before.
    expect(nine).toEqual({ outcome: 'granted', granted: 2 });
    await db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
      select ${mailbox.workspaceId}::uuid, ${mailbox.mailboxId}::uuid, 'outbound', 'sent', 'me@example.com', '{y@example.com}' from generate_series(1, 2)`);
    // The 8-argument version waits for the grants' claims (10 s), then counts them.
    expect(rows(await db.execute(sql`select outcome from mailbox_take_units(${args}, to_timestamp(1))`))).toEqual([{ outcome: 'wait' }]);
    expect(rows(await db.execute(sql`select outcome from mailbox_take_units(${args}, to_timestamp(11))`))).toEqual([{ outcome: 'budget_exhausted' }]);
  });
});
