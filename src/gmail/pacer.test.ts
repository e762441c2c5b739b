import { describe, expect, it } from 'vitest';
import { GmailError } from './gmail-errors.js';
import { GMAIL_QUOTA_UNITS, MailboxPacer, type PacerOptions } from './pacer.js';

/**
 * Virtual time: `sleep` registers a timer instead of waiting, and `drive` moves the clock to the
 * next timer whenever every promise has settled. Concurrent sleepers share one clock, so the
 * times a test sees are the times a real run would see.
 */
class VirtualClock {
  time = 0;
  /** Every wait the pacer asked for, in order. */
  readonly pacerSleeps: number[] = [];
  private timers: { at: number; seq: number; resolve: () => void }[] = [];
  private seq = 0;

  readonly now = () => this.time;

  readonly sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      this.timers.push({ at: this.time + ms, seq: this.seq++, resolve });
    });

  pacer(options: PacerOptions = {}): MailboxPacer {
    return new MailboxPacer({
      now: this.now,
      sleep: (ms) => {
        this.pacerSleeps.push(ms);
        return this.sleep(ms);
      },
      ...options,
    });
  }

  async drive<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let step = 0; step < 1_000_000; step++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (settled) return work;
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers.shift();
      if (!next) throw new Error('work is pending but nothing is scheduled');
      this.time = Math.max(this.time, next.at);
      next.resolve();
    }
    throw new Error('virtual time ran away');
  }

  /** Starts `work` once the clock reaches `at`. */
  at<T>(at: number, work: () => Promise<T>): Promise<T> {
    return this.sleep(at - this.time).then(work);
  }
}

const rateLimited = (retryAfterSeconds?: number) =>
  new GmailError('rate_limited', 'Gmail 429 rateLimitExceeded', { status: 429, reason: 'rateLimitExceeded', retryAfterSeconds });
const temporary = (n = 0) => new GmailError('temporary', `Gmail 503 backendError #${n}`, { status: 503, reason: 'backendError' });

describe('GMAIL_QUOTA_UNITS', () => {
  it('lists what Gmail charges per method', () => {
    expect(GMAIL_QUOTA_UNITS).toEqual({ send: 100, get: 5, list: 5, history: 2, profile: 1, watch: 100, stop: 50, labels: 1 });
  });
});

describe('MailboxPacer quota', () => {
  it('spends a full minute at once, then refills continuously (the 151st send waits 400 ms)', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer();
    const sentAt: number[] = [];
    await clock.drive(
      Promise.all(Array.from({ length: 200 }, () => pacer.run('mbx', GMAIL_QUOTA_UNITS.send, async () => sentAt.push(clock.time)))),
    );
    expect(sentAt).toHaveLength(200);
    expect(sentAt.slice(0, 150).every((t) => t === 0)).toBe(true);
    // 15,000 units a minute is 0.25 units/ms: 100 units every 400 ms.
    expect(sentAt[150]).toBe(400);
    expect(sentAt[151]).toBe(800);
    expect(sentAt[199]).toBe(50 * 400);
  });

  it('is full again after a quiet minute, and never holds more than a minute of quota', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer();
    const burst = () =>
      Promise.all(Array.from({ length: 150 }, () => pacer.run('mbx', 100, async () => clock.time)));
    await clock.drive(burst());
    await clock.drive(clock.at(10 * 60_000, async () => undefined));
    const second = await clock.drive(burst());
    expect(new Set(second)).toEqual(new Set([10 * 60_000]));
    const extra = await clock.drive(pacer.run('mbx', 100, async () => clock.time));
    expect(extra).toBe(10 * 60_000 + 400);
  });

  it('never overspends when many calls of different sizes run at once', async () => {
    const clock = new VirtualClock();
    const unitsPerMinute = 1_000;
    const pacer = clock.pacer({ unitsPerMinute });
    const spends: { at: number; units: number; order: number }[] = [];
    const sizes = Array.from({ length: 60 }, (_, i) => [GMAIL_QUOTA_UNITS.send, GMAIL_QUOTA_UNITS.get, GMAIL_QUOTA_UNITS.history, 50][i % 4]!);
    await clock.drive(
      Promise.all(sizes.map((units, order) => pacer.run('mbx', units, async () => void spends.push({ at: clock.time, units, order })))),
    );
    let spent = 0;
    for (const spend of spends) {
      spent += spend.units;
      expect(spent).toBeLessThanOrEqual(unitsPerMinute + (spend.at * unitsPerMinute) / 60_000 + 1e-9);
    }
    // First come, first served: a big send is not starved by the small reads behind it.
    expect(spends.map((s) => s.order)).toEqual(sizes.map((_, i) => i));
  });

  it('keeps mailboxes apart', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ unitsPerMinute: 200 });
    await clock.drive(pacer.run('a', 200, async () => undefined));
    expect(await clock.drive(pacer.run('b', 200, async () => clock.time))).toBe(0);
    expect(await clock.drive(pacer.run('a', 100, async () => clock.time))).toBe(30_000);
  });

  it('forgets a mailbox on disconnect', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ unitsPerMinute: 200 });
    await clock.drive(pacer.run('a', 200, async () => undefined));
    await clock.drive(pacer.run('a', 1, async () => { throw rateLimited(30); }).catch(() => undefined));
    expect(pacer.pausedUntil('a')).toBeDefined();
    pacer.forget('a');
    expect(pacer.pausedUntil('a')).toBeUndefined();
    expect(await clock.drive(pacer.run('a', 200, async () => clock.time))).toBe(clock.time);
  });

  it('refuses a call that costs more than a whole minute', async () => {
    const pacer = new VirtualClock().pacer({ unitsPerMinute: 100 });
    await expect(pacer.run('a', 101, async () => 'never')).rejects.toThrow(RangeError);
    await expect(pacer.run('a', -1, async () => 'never')).rejects.toThrow(RangeError);
  });

  it('waits with real timers when no clock is injected', async () => {
    const pacer = new MailboxPacer({ unitsPerMinute: 6_000 });
    await pacer.run('a', 6_000, async () => undefined);
    const started = Date.now();
    await pacer.run('a', 5, async () => undefined);
    // 6,000 units a minute is 0.1 units/ms: 5 units take 50 ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
  });
});

describe('MailboxPacer retries', () => {
  it('honours Retry-After: no retry before 7 s', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ random: () => 0.99 });
    const calledAt: number[] = [];
    const result = await clock.drive(
      pacer.run('a', 100, async () => {
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
      const clock = new VirtualClock();
      const pacer = clock.pacer({ baseDelayMs: 500, maxDelayMs: 2_000, maxAttempts: 6, random: () => randomValue });
      let calls = 0;
      await clock.drive(
        pacer.run('a', 1, async () => {
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
    const clock = new VirtualClock();
    const pacer = clock.pacer({ random: () => 0.5 });
    let calls = 0;
    await clock.drive(
      pacer.run('a', 1, async () => {
        if (++calls === 1) throw new GmailError('temporary', 'Gmail 503', { status: 503, retryAfterSeconds: 3 });
        return 'ok';
      }),
    );
    expect(clock.pacerSleeps).toEqual([3_000]);
    expect(pacer.pausedUntil('a')).toBeUndefined();
  });

  it('a 429 on mailbox A pauses A (every caller) and not B', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ random: () => 0 });
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
        pacer.run('a', 100, call('a', true)),
        clock.at(200, () => {
          pausedSeen = { a: pacer.pausedUntil('a'), b: pacer.pausedUntil('b') };
          return Promise.all([pacer.run('a', 5, call('a', false)), pacer.run('b', 100, call('b', false))]);
        }),
      ]),
    );
    expect(pausedSeen).toEqual({ a: 100 + 30_000, b: undefined });
    expect(calls.filter((c) => c.mailbox === 'b').map((c) => c.at)).toEqual([200]);
    const aCalls = calls.filter((c) => c.mailbox === 'a').map((c) => c.at);
    expect(aCalls[0]).toBe(0);
    expect(aCalls.slice(1).every((t) => t >= 30_100)).toBe(true);
    expect(pacer.pausedUntil('a')).toBeUndefined();
  });

  it.each(['permanent', 'auth_revoked', 'not_found'] as const)('does not retry %s', async (kind) => {
    const clock = new VirtualClock();
    const pacer = clock.pacer();
    const failure = new GmailError(kind, `Gmail ${kind}`);
    let calls = 0;
    const outcome = clock.drive(
      pacer.run('a', 100, async () => {
        calls++;
        throw failure;
      }),
    );
    await expect(outcome).rejects.toBe(failure);
    expect(calls).toBe(1);
    expect(clock.pacerSleeps).toEqual([]);
    expect(pacer.pausedUntil('a')).toBeUndefined();
  });

  it('does not retry errors that are not GmailErrors', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer();
    const bug = new TypeError('not a gmail failure');
    let calls = 0;
    await expect(clock.drive(pacer.run('a', 1, async () => { calls++; throw bug; }))).rejects.toBe(bug);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ maxAttempts: 3 });
    const thrown: GmailError[] = [];
    const outcome = clock.drive(
      pacer.run('a', 1, async () => {
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
    const clock = new VirtualClock();
    const pacer = clock.pacer({ maxDelayMs: 60_000 });
    const daily = new GmailError('rate_limited', 'Gmail 403 dailyLimitExceeded', { status: 403, reason: 'dailyLimitExceeded', retryAfterSeconds: 3_600 });
    let calls = 0;
    await expect(clock.drive(pacer.run('a', 100, async () => { calls++; throw daily; }))).rejects.toBe(daily);
    expect(calls).toBe(1);
    expect(pacer.pausedUntil('a')).toBe(3_600_000);

    const other = clock.drive(pacer.run('a', 5, async () => { calls++; return 'read'; }));
    await expect(other).rejects.toMatchObject({ kind: 'rate_limited', reason: 'mailbox_paused', retryAfterSeconds: 3_600 });
    expect(calls).toBe(1);

    const later = await clock.drive(clock.at(3_600_000, () => pacer.run('a', 5, async () => clock.time)));
    expect(later).toBeGreaterThanOrEqual(3_600_000);
  });

  it('does not let one caller giving up block the callers queued behind it', async () => {
    const clock = new VirtualClock();
    const pacer = clock.pacer({ maxDelayMs: 10_000 });
    await clock.drive(pacer.run('a', 1, async () => { throw rateLimited(20); }).catch(() => undefined));
    const results = await clock.drive(
      Promise.allSettled([pacer.run('a', 1, async () => 'first'), clock.at(25_000, () => pacer.run('a', 1, async () => 'second'))]),
    );
    expect(results[0].status).toBe('rejected');
    expect(results[1]).toEqual({ status: 'fulfilled', value: 'second' });
  });
});
