import { getEventListeners } from 'node:events';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { VirtualClock, temporary, usePacerStores } from '../../test/helpers/pacer-harness.js';
import { rowsOf } from '../db/pg-array.js';
import type { LimitStore } from './limit-store.js';

/*
 * A caller that gives up (`run`'s `signal`: a send worker stopping) leaves the pacer at once and
 * takes nothing, on virtual time, on both stores (test/helpers/pacer-harness.ts). Sends are paced
 * at 60 a minute: one a second.
 */

const harness = usePacerStores();
const SEND = { send: true } as const;
const stopping = new Error('the worker stops');

/** How the SQL store counted a mailbox's grants: sends of its daily budget taken (the memory store keeps no budget). */
async function budgetTaken(name: string, mailboxId: string): Promise<number | undefined> {
  if (name !== 'SQL store') return undefined;
  const [row] = rowsOf<{ used: number | null }>(
    await harness.db().db.execute(sql`
      select a.budget_used as used from mailboxes m join mailbox_budget_accounts a on a.address = lower(m.email) where m.id = ${mailboxId}::uuid`),
  );
  return row?.used ?? 0;
}

describe.each(harness.stores)('MailboxPacer: a caller that gives up ($name)', (store) => {
  it('leaves at once, from the head or from further back, taking nothing; the next in line is served in order', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ sendsPerMinute: 60 });
    const [a] = await store.mailboxes(1);
    const head = new AbortController();
    const behind = new AbortController();
    const ran: string[] = [];
    const send = (name: string, signal?: AbortSignal) =>
      pacer.run(a!, 100, async () => void ran.push(`${name}@${clock.time}`), { ...SEND, signal }).then(
        () => 'sent',
        (error: unknown) => (error === stopping ? `left@${clock.time}` : error),
      );
    const outcomes = await clock.drive(
      Promise.all([
        send('first'),
        // At the head from 0 on, told to wait for the pace until 1 s: gives up at 0.5 s.
        send('head', head.signal),
        send('second'),
        // Queued behind the head: gives up at 0.5 s too.
        send('behind', behind.signal),
        send('third'),
        clock.at(500, async () => {
          head.abort(stopping);
          behind.abort(stopping);
          return 'aborted';
        }),
      ]),
    );
    expect(outcomes).toEqual(['sent', 'left@500', 'sent', 'left@500', 'sent', 'aborted']);
    // The slots the two would have taken go to the next in line, in their order.
    expect(ran).toEqual(['first@0', 'second@1000', 'third@2000']);
    expect(await budgetTaken(store.name, a!)).toBe(store.name === 'SQL store' ? 3 : undefined);
    expect(getEventListeners(head.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(behind.signal, 'abort')).toHaveLength(0);
  });

  it('never asks the store for a caller whose signal aborted before it came', async () => {
    let asked = 0;
    const clock = new VirtualClock((c) => {
      const inner = store.make(c);
      return { ...inner, take: (...args: Parameters<LimitStore['take']>) => (asked++, inner.take(...args)) };
    });
    const pacer = clock.pacer({ sendsPerMinute: 60 });
    const [a] = await store.mailboxes(1);
    let calls = 0;
    await expect(clock.drive(pacer.run(a!, 100, async () => calls++, { ...SEND, signal: AbortSignal.abort(stopping) }))).rejects.toBe(stopping);
    expect({ asked, calls }).toEqual({ asked: 0, calls: 0 });
    expect(await budgetTaken(store.name, a!)).toBe(store.name === 'SQL store' ? 0 : undefined);
  });

  it('once the store is being asked, its answer decides: a grant runs the call, a wait lets it leave then', async () => {
    // The store answers the caller's second question (the head's, after the first send) only once it gave up.
    const gaveUp = new AbortController();
    let takes = 0;
    const clock = new VirtualClock((c) => {
      const inner = store.make(c);
      return {
        ...inner,
        take: async (...args: Parameters<LimitStore['take']>) => {
          if (++takes === 2) gaveUp.abort(stopping);
          return inner.take(...args);
        },
      };
    });
    const pacer = clock.pacer({ sendsPerMinute: 60 });
    const [a] = await store.mailboxes(1);
    const ran: number[] = [];
    const waited = await clock.drive(
      Promise.allSettled([
        pacer.run(a!, 100, async () => ran.push(clock.time), SEND),
        pacer.run(a!, 100, async () => ran.push(clock.time), { ...SEND, signal: gaveUp.signal }).catch((error: unknown) => Promise.reject({ error, at: clock.time })),
      ]),
    );
    // Told to wait for the pace in the answer it was asking for: it leaves with that answer, at 0, not after the wait.
    expect(waited[1]).toEqual({ status: 'rejected', reason: { error: stopping, at: 0 } });
    expect(ran).toEqual([0]);
    // And no caller being left, the mailbox's queue does not sleep out that wait.
    expect(clock.timersLeft).toBe(0);

    // Asked again once the pace allows a send: granted, so the call runs although it gave up meanwhile (the caller's own check refuses it).
    const late = new AbortController();
    takes = 0;
    const clockAfter = new VirtualClock((c) => {
      const inner = store.make(c);
      return { ...inner, take: async (...args: Parameters<LimitStore['take']>) => (++takes === 1 && late.abort(stopping), inner.take(...args)) };
    });
    const [b] = await store.mailboxes(1);
    const granted = await clockAfter.drive(clockAfter.pacer({ sendsPerMinute: 60 }).run(b!, 100, async () => 'ran', { ...SEND, signal: late.signal }));
    expect(granted).toBe('ran');
    expect(await budgetTaken(store.name, b!)).toBe(store.name === 'SQL store' ? 1 : undefined);
  });

  it('leaves a retry\'s backoff at once', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ random: () => 0.99, baseDelayMs: 5_000, maxDelayMs: 10_000 });
    const [a] = await store.mailboxes(1);
    const gaveUp = new AbortController();
    let calls = 0;
    const outcome = await clock.drive(
      Promise.all([
        pacer.run(a!, 1, async () => {
          calls++;
          throw temporary(calls);
        }, { signal: gaveUp.signal }).catch((error: unknown) => ({ error, at: clock.time })),
        clock.at(1_000, async () => gaveUp.abort(stopping)),
      ]),
    );
    // Backing off 4.95 s after the first failure: left at 1 s, with no second attempt.
    expect(clock.pacerSleeps).toEqual([4_950]);
    expect(outcome[0]).toEqual({ error: stopping, at: 1_000 });
    expect(calls).toBe(1);
    expect(clock.timersLeft).toBe(0);
  });

  it('wakes the queue from its wait once the last caller waiting has left: no timer is left behind, and a later caller is served in its turn', async () => {
    const clock = new VirtualClock(store.make);
    const limits = clock.store();
    const pacer = clock.pacer({ sendsPerMinute: 60, store: limits });
    const [a, b] = await store.mailboxes(2);
    const sent = (mailboxId: string, signal?: AbortSignal) =>
      pacer.run(mailboxId, 100, async () => clock.time, { ...SEND, signal }).catch((error: unknown) => (error === stopping ? `left@${clock.time}` : error));
    const paced = new AbortController();
    const paused = new AbortController();
    const outcomes = await clock.drive(
      Promise.all([
        sent(a!),
        // Told to wait for the pace until 1 s.
        sent(a!, paced.signal),
        // The other mailbox paused for 30 s (a 429 seen by any process).
        limits.pause(b!, 30_000, 0).then(() => sent(b!, paused.signal)),
        clock.at(500, async () => (paced.abort(stopping), paused.abort(stopping), 'aborted')),
      ]),
    );
    expect(outcomes).toEqual([0, 'left@500', 'left@500', 'aborted']);
    // Before, each queue slept out its wait with no caller left (until 1 s, and 30 s): its timer kept the process up.
    expect(clock.timersLeft).toBe(0);
    expect(clock.pacerSleeps.toSorted((x, y) => x - y)).toEqual([1_000, 30_000]);
    // A send that comes later starts the queue again and waits for its pace as before.
    expect(await clock.drive(clock.at(600, () => sent(a!)))).toBe(1_000);
  });
});
