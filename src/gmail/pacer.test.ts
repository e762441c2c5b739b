import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../../test/helpers/test-db.js';
import type { Database } from '../db/connect.js';
import { GmailError } from './gmail-errors.js';
import { createMemoryLimitStore, createSqlLimitStore, type LimitStore } from './limit-store.js';
import { GMAIL_QUOTA_UNITS, MailboxPacer, type PacerOptions } from './pacer.js';

/**
 * Virtual time: `sleep` registers a timer instead of waiting, and `drive` moves the clock to the
 * next timer whenever every promise has settled and no store call is in flight. Concurrent
 * sleepers share one clock, so the times a test sees are the times a real run would see.
 * The same tests run on the memory store and on the SQL store (PGlite, or the server with
 * TEST_DATABASE_URL), the one every process shares in service.
 */
class VirtualClock {
  time = 0;
  /** Every wait the pacer asked for, in order. */
  readonly pacerSleeps: number[] = [];
  private timers: { at: number; seq: number; resolve: () => void }[] = [];
  private seq = 0;
  private storeCalls = 0;

  constructor(private readonly makeStore: (clock: VirtualClock) => LimitStore) {}

  readonly now = () => this.time;

  readonly sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      this.timers.push({ at: this.time + ms, seq: this.seq++, resolve });
    });

  /** A store whose calls the clock waits for before moving time on (a database answers in real time). */
  store(): LimitStore {
    const inner = this.makeStore(this);
    const track = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A) => {
      this.storeCalls++;
      try {
        return await fn(...args);
      } finally {
        this.storeCalls--;
      }
    };
    return {
      take: track(inner.take),
      pause: track(inner.pause),
      pausedUntil: track(inner.pausedUntil),
      budgetChanged: track(inner.budgetChanged),
      forget: track(inner.forget),
    };
  }

  /** A pacer on this clock; pacers given the same `store` behave as processes sharing one database. */
  pacer(options: PacerOptions = {}): MailboxPacer {
    return new MailboxPacer({
      now: this.now,
      sleep: (ms) => {
        this.pacerSleeps.push(ms);
        return this.sleep(ms);
      },
      store: options.store ?? this.store(),
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
      if (this.storeCalls > 0) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        continue;
      }
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

/** The most units (or sends) taken in any 60 s window, from a list of (time, amount). */
function busiestMinute(spends: { at: number; units: number }[]): number {
  const sorted = [...spends].sort((a, b) => a.at - b.at);
  let most = 0;
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0;
    for (let j = i; j < sorted.length && sorted[j]!.at < sorted[i]!.at + 60_000; j++) sum += sorted[j]!.units;
    most = Math.max(most, sum);
  }
  return most;
}

const rateLimited = (retryAfterSeconds?: number) =>
  new GmailError('rate_limited', 'Gmail 429 rateLimitExceeded', { status: 429, reason: 'rateLimitExceeded', retryAfterSeconds });
const temporary = (n = 0) => new GmailError('temporary', `Gmail 503 backendError #${n}`, { status: 503, reason: 'backendError' });

let database: Database | undefined;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

/** Mailboxes for the SQL store's foreign key: a fresh set per test, so no state carries over. */
async function createMailboxes(db: Database, count: number, dailyBudget = 2_000): Promise<string[]> {
  const run = (query: ReturnType<typeof sql>) => db.db.execute(query) as unknown as Promise<{ rows: { id: string }[] }>;
  const [workspace] = (await run(sql`insert into workspaces (name) values ('pacer test') returning id`)).rows;
  const [user] = (await run(sql`insert into users (email, password_hash) values (${`pacer-${crypto.randomUUID()}@example.com`}, 'x') returning id`)).rows;
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const [row] = (
      await run(sql`insert into mailboxes (workspace_id, user_id, email, kind, scopes, disclosure_version, refresh_token_enc, daily_budget)
        values (${workspace!.id}, ${user!.id}, ${`m${i}-${crypto.randomUUID()}@example.com`}, 'workspace', '{}', 'v', 'x', ${dailyBudget}) returning id`)
    ).rows;
    ids.push(row!.id);
  }
  return ids;
}

const STORES = [
  { name: 'memory store', make: (clock: VirtualClock) => createMemoryLimitStore(clock.now), realTime: () => createMemoryLimitStore(), mailboxes: async (count: number) => Array.from({ length: count }, (_, i) => `mbx-${i}`) },
  { name: 'SQL store', make: () => createSqlLimitStore(database!.db), realTime: () => createSqlLimitStore(database!.db), mailboxes: (count: number) => createMailboxes(database!, count) },
];

describe('GMAIL_QUOTA_UNITS', () => {
  it('lists what Gmail charges per method', () => {
    expect(GMAIL_QUOTA_UNITS).toEqual({ send: 100, get: 5, list: 5, history: 2, profile: 1, watch: 100, stop: 50, labels: 1 });
  });
});

describe.each(STORES)('MailboxPacer quota ($name)', (store) => {
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
    expect(reads.every((t) => t < 9 * 2_000)).toBe(true);
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

describe.each(STORES)('MailboxPacer retries ($name)', (store) => {
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

describe('MailboxPacer daily budget (SQL store: it counts the sent messages)', () => {
  it('lets a mailbox send its budget across processes, then refuses sends (not reads) without calling Gmail', async () => {
    const clock = new VirtualClock(() => createSqlLimitStore(database!.db));
    const shared = clock.store();
    const processes = [clock.pacer({ store: shared, budgetRecountMs: 0 }), clock.pacer({ store: shared, budgetRecountMs: 0 })];
    const [mailboxId] = await createMailboxes(database!, 1, 5);
    const [{ workspace_id: workspaceId }] = ((await database!.db.execute(sql`select workspace_id from mailboxes where id = ${mailboxId}::uuid`)) as unknown as {
      rows: { workspace_id: string }[];
    }).rows as [{ workspace_id: string }];
    // Two sent earlier today.
    await database!.db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
      select ${workspaceId}::uuid, ${mailboxId}::uuid, 'outbound', 'sent', 'me@example.com', '{x@example.com}' from generate_series(1, 2)`);
    let calls = 0;
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      // The worker records the message as `sending` before its Gmail call, as the claim does.
      const claimed = ((await database!.db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses)
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
      await database!.db.execute(sql`update messages set status = ${outcome === 'sent' ? 'sent' : 'failed'} where id = ${claimed}::uuid`);
    }
    expect(outcomes).toEqual(['sent', 'sent', 'sent', 'rate_limited/daily_budget', 'rate_limited/daily_budget']);
    expect(calls).toBe(3);
    expect(await clock.drive(processes[0]!.run(mailboxId!, 5, async () => 'read'))).toBe('read');
  });
});
