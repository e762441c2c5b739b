import { describe, expect, it } from 'vitest';
import { VirtualClock, rateLimited, temporary, usePacerStores } from '../../test/helpers/pacer-harness.js';
import { GmailError } from './gmail-errors.js';

/* The pacer's retries and rate-limit pauses on virtual time, on both stores (see test/helpers/pacer-harness.ts). */

const harness = usePacerStores();

describe.each(harness.stores)('MailboxPacer retries ($name)', (store) => {
  it('honours Retry-After: no retry before 7 s', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ random: () => 0.99 });
    const [a] = await store.mailboxes(1);
    const calledAt: number[] = [];
    const result = await clock.drive(
      pacer.run(a!, 100, async () => {
        calledAt.push(clock.time);
        if (calledAt.length === 1) throw rateLimited(7);
        return 'sent';
      }),
    );
    expect(result).toBe('sent');
    expect(calledAt[0]).toBe(0);
    expect(calledAt[1]).toBeGreaterThanOrEqual(7_000);
    expect(clock.pacerSleeps[0]).toBe(7_000);
  });

  it('keeps backoff jitter within the exponential cap and maxDelayMs', async () => {
    for (const randomValue of [0, 0.5, 0.999_999]) {
      const clock = new VirtualClock(store.make);
      const pacer = clock.pacer({ baseDelayMs: 500, maxDelayMs: 2_000, maxAttempts: 6, random: () => randomValue });
      const [a] = await store.mailboxes(1);
      let calls = 0;
      await clock.drive(
        pacer.run(a!, 1, async () => {
          if (++calls < 6) throw temporary(calls);
          return 'ok';
        }),
      );
      const caps = [500, 1_000, 2_000, 2_000, 2_000];
      expect(clock.pacerSleeps).toHaveLength(caps.length);
      clock.pacerSleeps.forEach((slept, i) => {
        expect(slept).toBeGreaterThanOrEqual(0);
        expect(slept).toBeLessThan(caps[i]!);
        expect(slept).toBe(Math.floor(randomValue * caps[i]!));
      });
    }
  });

  it('uses Retry-After over a shorter jittered backoff for temporary errors too', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ random: () => 0.5 });
    const [a] = await store.mailboxes(1);
    let calls = 0;
    await clock.drive(
      pacer.run(a!, 1, async () => {
        if (++calls === 1) throw new GmailError('temporary', 'Gmail 503', { status: 503, retryAfterSeconds: 3 });
        return 'ok';
      }),
    );
    expect(clock.pacerSleeps).toEqual([3_000]);
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBeUndefined();
  });

  it('a 429 on mailbox A pauses A (every caller, in every process sharing the store) and not B', async () => {
    const clock = new VirtualClock(store.make);
    const shared = clock.store();
    const pacer = clock.pacer({ random: () => 0, store: shared });
    const otherProcess = clock.pacer({ random: () => 0, store: shared });
    const [a, b] = await store.mailboxes(2);
    const calls: { mailbox: string; at: number }[] = [];
    const call = (mailbox: string, failFirst: boolean) => {
      let attempts = 0;
      return async () => {
        calls.push({ mailbox, at: clock.time });
        await clock.sleep(100); // Gmail takes a moment to answer
        if (failFirst && attempts++ === 0) throw rateLimited(30);
        return mailbox;
      };
    };
    let pausedSeen: { a?: number; b?: number } = {};
    await clock.drive(
      Promise.all([
        pacer.run(a!, 100, call(a!, true)),
        clock.at(200, async () => {
          pausedSeen = { a: await otherProcess.pauseEndsAt(a!), b: await otherProcess.pauseEndsAt(b!) };
          return Promise.all([otherProcess.run(a!, 5, call(a!, false)), otherProcess.run(b!, 100, call(b!, false))]);
        }),
      ]),
    );
    expect(pausedSeen).toEqual({ a: 100 + 30_000, b: undefined });
    expect(calls.filter((c) => c.mailbox === b).map((c) => c.at)).toEqual([200]);
    const aCalls = calls.filter((c) => c.mailbox === a).map((c) => c.at);
    expect(aCalls[0]).toBe(0);
    expect(aCalls.slice(1).every((t) => t >= 30_100)).toBe(true);
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBeUndefined();
  });

  it('tells a call held behind a pause that it waits (onPaused), and not a call that goes at once', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ random: () => 0 });
    const [a, b] = await store.mailboxes(2);
    const told: string[] = [];
    await clock.drive(
      Promise.all([
        pacer.run(a!, 100, async () => {
          if (told.length === 0 && clock.time === 0) {
            await clock.sleep(100);
            throw rateLimited(5);
          }
          return 'retried';
        }, { onPaused: () => told.push('first') }),
        // Asks during the pause (a send of the same round the pacer had not granted yet): held, and told.
        clock.at(200, () => pacer.run(a!, 100, async () => clock.time, { send: true, onPaused: () => told.push('held') })),
        // Another mailbox is not paused: not told.
        clock.at(200, () => pacer.run(b!, 100, async () => clock.time, { onPaused: () => told.push('other mailbox') })),
      ]),
    );
    expect(told).toContain('held');
    expect(told).not.toContain('other mailbox');
  });

  it.each(['permanent', 'auth_revoked', 'not_found'] as const)('does not retry %s', async (kind) => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer();
    const [a] = await store.mailboxes(1);
    const failure = new GmailError(kind, `Gmail ${kind}`);
    let calls = 0;
    const outcome = clock.drive(
      pacer.run(a!, 100, async () => {
        calls++;
        throw failure;
      }),
    );
    await expect(outcome).rejects.toBe(failure);
    expect(calls).toBe(1);
    expect(clock.pacerSleeps).toEqual([]);
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBeUndefined();
  });

  it('does not retry errors that are not GmailErrors', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer();
    const [a] = await store.mailboxes(1);
    const bug = new TypeError('not a gmail failure');
    let calls = 0;
    await expect(clock.drive(pacer.run(a!, 1, async () => { calls++; throw bug; }))).rejects.toBe(bug);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ maxAttempts: 3 });
    const [a] = await store.mailboxes(1);
    const thrown: GmailError[] = [];
    const outcome = clock.drive(
      pacer.run(a!, 1, async () => {
        const error = thrown.length % 2 ? rateLimited(1) : temporary(thrown.length);
        thrown.push(error);
        throw error;
      }),
    );
    const failure = await outcome.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(thrown).toHaveLength(3);
    expect(failure).toBe(thrown[2]);
  });

  it('hands a wait longer than maxDelayMs back to the caller, and turns away others while paused', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ maxDelayMs: 60_000 });
    const [a] = await store.mailboxes(1);
    const daily = new GmailError('rate_limited', 'Gmail 403 dailyLimitExceeded', { status: 403, reason: 'dailyLimitExceeded', retryAfterSeconds: 3_600 });
    let calls = 0;
    await expect(clock.drive(pacer.run(a!, 100, async () => { calls++; throw daily; }))).rejects.toBe(daily);
    expect(calls).toBe(1);
    expect(await clock.drive(pacer.pauseEndsAt(a!))).toBe(3_600_000);

    const other = clock.drive(pacer.run(a!, 5, async () => { calls++; return 'read'; }));
    await expect(other).rejects.toMatchObject({ kind: 'rate_limited', reason: 'mailbox_paused', retryAfterSeconds: 3_600 });
    expect(calls).toBe(1);

    const later = await clock.drive(clock.at(3_600_000, () => pacer.run(a!, 5, async () => clock.time)));
    expect(later).toBeGreaterThanOrEqual(3_600_000);
  });

  it('does not let one caller giving up block the callers queued behind it', async () => {
    const clock = new VirtualClock(store.make);
    const pacer = clock.pacer({ maxDelayMs: 10_000 });
    const [a] = await store.mailboxes(1);
    await clock.drive(pacer.run(a!, 1, async () => { throw rateLimited(20); }).catch(() => undefined));
    const results = await clock.drive(
      Promise.allSettled([pacer.run(a!, 1, async () => 'first'), clock.at(25_000, () => pacer.run(a!, 1, async () => 'second'))]),
    );
    expect(results[0].status).toBe('rejected');
    expect(results[1]).toEqual({ status: 'fulfilled', value: 'second' });
  });
});

