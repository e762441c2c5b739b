import { sql } from 'drizzle-orm';
import { afterAll, beforeAll } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { GmailError } from '../../src/gmail/gmail-errors.js';
import { createMemoryLimitStore, createSqlLimitStore, type LimitStore } from '../../src/gmail/limit-store.js';
import { MailboxPacer, type PacerOptions } from '../../src/gmail/pacer.js';
import { createTestDatabase } from './test-db.js';

/**
 * Virtual time: `sleep` registers a timer instead of waiting, and `drive` moves the clock to the
 * next timer whenever every promise has settled and no store call is in flight. Concurrent
 * sleepers share one clock, so the times a test sees are the times a real run would see.
 * The same tests run on the memory store and on the SQL store (PGlite, or the server with
 * TEST_DATABASE_URL), the one every process shares in service.
 */
export class VirtualClock {
  time = 0;
  /** Every wait the pacer asked for, in order. */
  readonly pacerSleeps: number[] = [];
  private timers: { at: number; seq: number; resolve: () => void }[] = [];
  private seq = 0;
  private storeCalls = 0;

  constructor(private readonly makeStore: (clock: VirtualClock) => LimitStore) {}

  readonly now = () => this.time;

  /** An abort of `signal` takes the timer away and ends the wait then, as the pacer's default sleep clears its timer. */
  readonly sleep = (ms: number, signal?: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = { at: this.time + ms, seq: this.seq++, resolve };
      this.timers.push(timer);
      signal?.addEventListener('abort', () => ((this.timers = this.timers.filter((t) => t !== timer)), resolve()), { once: true });
    });

  /** Timers still set: a wait nobody needs any more should leave none. */
  get timersLeft(): number {
    return this.timers.length;
  }

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

  /** Database work of the test itself (a claim's row) that the clock waits for, like a store call. */
  async work<T>(fn: () => Promise<T>): Promise<T> {
    this.storeCalls++;
    try {
      return await fn();
    } finally {
      this.storeCalls--;
    }
  }

  /** A pacer on this clock; pacers given the same `store` behave as processes sharing one database. */
  pacer(options: PacerOptions = {}): MailboxPacer {
    return new MailboxPacer({
      now: this.now,
      sleep: (ms, signal) => {
        this.pacerSleeps.push(ms);
        return this.sleep(ms, signal);
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
export function busiestMinute(spends: { at: number; units: number }[]): number {
  const sorted = [...spends].sort((a, b) => a.at - b.at);
  let most = 0;
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0;
    for (let j = i; j < sorted.length && sorted[j]!.at < sorted[i]!.at + 60_000; j++) sum += sorted[j]!.units;
    most = Math.max(most, sum);
  }
  return most;
}

export const rateLimited = (retryAfterSeconds?: number) =>
  new GmailError('rate_limited', 'Gmail 429 rateLimitExceeded', { status: 429, reason: 'rateLimitExceeded', retryAfterSeconds });
export const temporary = (n = 0) => new GmailError('temporary', `Gmail 503 backendError #${n}`, { status: 503, reason: 'backendError' });

/** Mailboxes for the SQL store's foreign key: a fresh set per test, so no state carries over. */
export async function createMailboxes(db: Database, count: number, dailyBudget = 2_000): Promise<string[]> {
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

/**
 * Both stores for describe.each, over a private test database opened for the calling file:
 * the memory store (mailbox ids are any strings) and the SQL store (real mailbox rows).
 */
export function usePacerStores() {
  let database: Database | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.close();
  });
  const db = () => database!;
  return {
    db,
    stores: [
      {
        name: 'memory store',
        make: (clock: VirtualClock): LimitStore => createMemoryLimitStore(clock.now),
        realTime: (): LimitStore => createMemoryLimitStore(),
        mailboxes: async (count: number) => Array.from({ length: count }, (_, i) => `mbx-${i}`),
      },
      {
        name: 'SQL store',
        make: (): LimitStore => createSqlLimitStore(db().db),
        realTime: (): LimitStore => createSqlLimitStore(db().db),
        mailboxes: (count: number) => createMailboxes(db(), count),
      },
    ],
  };
}
