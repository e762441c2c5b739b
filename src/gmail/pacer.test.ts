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
  it('lets a mailbox send its budget across processes, then refuses sends (not reads) without calling Gmail', async () => {
    const clock = new VirtualClock(() => createSqlLimitStore(harness.db().db));
    const shared = clock.store();
    const processes = [clock.pacer({ store: shared, budgetRecountMs: 0 }), clock.pacer({ store: shared, budgetRecountMs: 0 })];
    const [mailboxId] = await createMailboxes(harness.db(), 1, 5);
    const [{ workspace_id: workspaceId }] = ((await harness.db().db.execute(sql`select workspace_id from mailboxes where id = ${mailboxId}::uuid`)) as unknown as {
      rows: { workspace_id: string }[];
    }).rows as [{ workspace_id: string }];
    // Two sent earlier today.
    await harness.db().db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
      select ${workspaceId}::uuid, ${mailboxId}::uuid, 'outbound', 'sent', 'me@example.com', '{x@example.com}' from generate_series(1, 2)`);
    let calls = 0;
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      // The worker records the message as `sending` before its Gmail call, as the claim does.
      const claimed = ((await harness.db().db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
        values (${workspaceId}::uuid, ${mailboxId}::uuid, 'outbound', 'sending', 'me@example.com', '{y@example.com}') returning id`)) as unknown as {
        rows: { id: string }[];
      }).rows[0]!.id;
      const outcome = await clock
        .drive(processes[i % 2]!.run(mailboxId!, 100, async () => void calls++, { send: true }))
        .then(
          () => 'sent',
          (error: GmailError) => `${error.kind}/${error.reason}`,
        );
      outcomes.push(outcome);
      // Refused, so never sent: the worker records it failed (or requeues it); either way it no longer counts.
      await harness.db().db.execute(sql`update messages set status = ${outcome === 'sent' ? 'sent' : 'failed'} where id = ${claimed}::uuid`);
    }
    expect(outcomes).toEqual(['sent', 'sent', 'sent', 'rate_limited/daily_budget', 'rate_limited/daily_budget']);
    expect(calls).toBe(3);
    expect(await clock.drive(processes[0]!.run(mailboxId!, 5, async () => 'read'))).toBe('read');
  });
});
