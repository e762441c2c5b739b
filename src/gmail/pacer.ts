import { setTimeout as delay } from 'node:timers/promises';
import { GmailError } from './gmail-errors.js';
import { createMemoryLimitStore, type LimitPolicy, type LimitStore, type TakeOutcome } from './limit-store.js';
import type { Db } from '../db/connect.js';

/**
 * Every Gmail call for a mailbox goes through that mailbox's pacer, so the service as a whole
 * stays inside Google's per-user quota instead of discovering it through 429s, and retries
 * happen in one place with one policy.
 *
 * The limits themselves live in a LimitStore: with the SQL store (the service's) every
 * process shares one row per mailbox, so N worker processes together keep one mailbox's
 * quota, sends-per-minute pace, daily budget and Retry-After pauses (invariant 10). Within a
 * process, callers for a mailbox queue first come, first served (sends apart from other calls),
 * so only the head of each queue asks the store.
 */

/** Quota units Gmail charges per method (developers.google.com/gmail/api/reference/quota). */
export const GMAIL_QUOTA_UNITS = Object.freeze({
  send: 100,
  get: 5,
  list: 5,
  history: 2,
  profile: 1,
  watch: 100,
  stop: 50,
  labels: 1,
} as const);

export type GmailQuotaOperation = keyof typeof GMAIL_QUOTA_UNITS;

export interface PacerOptions {
  /** Gmail's per-user quota; default 15_000. */
  unitsPerMinute?: number;
  /** Most units taken at once after a quiet spell; default a fifteenth of a minute (1,000 of 15,000). Any call costs at most this. */
  burstUnits?: number;
  /** Sends per minute per mailbox (GMAIL_SENDS_PER_MINUTE); default unlimited beyond the quota. */
  sendsPerMinute?: number;
  /**
   * When the daily budget's headroom is used up, sent messages are counted again — at most this
   * often; default 0 (every time: near the end of a day's budget each send counts, which is
   * exact; earlier, one count covers many sends).
   */
  budgetRecountMs?: number;
  /**
   * How long a granted send may take to be claimed (its `sending` row: a token refresh, then
   * the gate); a recount of the budget waits until the last grant is this old, so it counts
   * every send granted. Default 10_000. The wait only comes when the headroom ran out.
   */
  budgetClaimGraceMs?: number;
  /** Where the limits live; default one process's memory. The service passes the SQL store. */
  store?: LimitStore;
  /** Tries per `run`, the first one included; default 6. */
  maxAttempts?: number;
  /** First backoff cap; doubles with every retry; default 500. */
  baseDelayMs?: number;
  /** Longest backoff, and the longest any single wait inside `run` may be; default 60_000. */
  maxDelayMs?: number;
  /** ms clock for tests (also handed to the store); default: the store's clock (the database's, for the SQL store). */
  now?: () => number;
  /** Waits `ms`; an abort of `signal` ends the wait early, its timer cleared (so none is left to keep the process up). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** For jitter, default Math.random. */
  random?: () => number;
}

/** Retry-After for a send refused by the daily budget: Gmail's window rolls, so a slot frees up within the hour or so. */
const BUDGET_RETRY_SECONDS = 15 * 60;
/** Without a pace configured, sends are limited by the quota alone. */
const UNPACED = 1e9;

interface Waiter {
  units: number;
  /** A send that already holds its unit of the daily budget (see `run`'s `alreadyCounted`). */
  counted: boolean;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** Told when its turn waits out the mailbox's pause (see `run`'s `onPaused`). */
  onPaused?: () => void;
  /** Its caller gives up when this aborts (see `run`'s `signal`). */
  signal?: AbortSignal;
  /** In a store call now: an abort no longer takes it out of its queue, the store's answer decides. */
  asking?: boolean;
}

/** The reason of the refusal of a call whose mailbox was purged, or of a new send whose mailbox was disconnected (marked deleted). */
export const MAILBOX_GONE = 'mailbox_gone';

/** The reason of the refusal of a new send whose mailbox's grant Google refused meanwhile (marked needs_reconnect). */
export const NEEDS_RECONNECT = 'needs_reconnect';

/** What a store answer that neither grants nor waits in-process tells the head of the queue. */
function refusalOf(outcome: Exclude<TakeOutcome, { kind: 'granted' | 'wait' }>): GmailError {
  switch (outcome.kind) {
    case 'budget_exhausted':
      return new GmailError('rate_limited', 'The mailbox has sent its daily budget', { reason: 'daily_budget', retryAfterSeconds: BUDGET_RETRY_SECONDS });
    case 'unknown_mailbox':
      return new GmailError('permanent', 'The mailbox is no longer connected', { reason: MAILBOX_GONE });
    case 'needs_reconnect':
      // As if Google had refused the grant at this call (it did, at an earlier one): the mailbox is
      // already marked, so the caller only pauses its work (a campaign) or answers 409 (1:1 mail).
      return new GmailError('auth_revoked', 'The mailbox needs reconnecting', { reason: NEEDS_RECONNECT });
    case 'paused':
      return new GmailError('rate_limited', 'Gmail mailbox is paused by a rate limit', { reason: 'mailbox_paused', retryAfterSeconds: Math.ceil(outcome.waitMs / 1000) });
  }
}

/** `wait`, cut short by the signal: rejected with its reason as soon as it aborts. */
function unlessAborted(wait: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return wait;
  return new Promise<void>((resolve, reject) => {
    const leave = () => reject(signal.reason);
    if (signal.aborted) return leave();
    signal.addEventListener('abort', leave, { once: true });
    void wait.finally(() => signal.removeEventListener('abort', leave)).then(resolve, reject);
  });
}

const defaultSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal }).catch(() => undefined);

function requireNumber(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min) throw new RangeError(`${name} must be a finite number ≥ ${min}`);
  return value;
}

export class MailboxPacer {
  private readonly policy: LimitPolicy;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly now?: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly store: LimitStore;
  /**
   * Per mailbox, this process's callers waiting for units, in order (the head asks the store).
   * Sends queue apart from other calls, so that reads (sync) never wait behind sends held back by the pace.
   */
  private readonly waiting = new Map<string, Waiter[]>();
  /** Per queue, the wait its serve loop is sleeping out (at most one): aborted to wake the loop. */
  private readonly naps = new Map<string, AbortController>();

  constructor(options: PacerOptions = {}) {
    const unitsPerMinute = requireNumber('unitsPerMinute', options.unitsPerMinute ?? 15_000, Number.MIN_VALUE);
    const burstUnits = requireNumber('burstUnits', options.burstUnits ?? unitsPerMinute / 15, Number.MIN_VALUE);
    if (burstUnits >= unitsPerMinute) throw new RangeError('burstUnits must be less than unitsPerMinute');
    this.policy = {
      unitsPerMinute,
      burstUnits,
      sendsPerMinute: requireNumber('sendsPerMinute', options.sendsPerMinute ?? UNPACED, Number.MIN_VALUE),
      budgetRecountMs: requireNumber('budgetRecountMs', options.budgetRecountMs ?? 0, 0),
      budgetClaimGraceMs: requireNumber('budgetClaimGraceMs', options.budgetClaimGraceMs ?? 10_000, 0),
    };
    this.maxAttempts = Math.floor(requireNumber('maxAttempts', options.maxAttempts ?? 6, 1));
    this.baseDelayMs = requireNumber('baseDelayMs', options.baseDelayMs ?? 500, 0);
    this.maxDelayMs = requireNumber('maxDelayMs', options.maxDelayMs ?? 60_000, this.baseDelayMs);
    this.now = options.now;
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.store = options.store ?? createMemoryLimitStore(options.now);
  }

  /**
   * Waits for `units` of the mailbox's quota (and, with `send`, for its pace and daily budget),
   * runs `call`, and retries GmailError kinds rate_limited/temporary with exponential backoff +
   * full jitter, never sooner than the error's retryAfterSeconds.
   * A rate_limited answer pauses the whole mailbox — every caller in every process — until Retry-After has passed.
   * auth_revoked / not_found / permanent are rethrown at once; after maxAttempts the last GmailError is rethrown.
   * Errors that are not GmailError are rethrown at once (the caller's gmail client converts with toGmailError before they get here).
   *
   * No single wait exceeds `maxDelayMs`: when Google asks for longer (a daily limit), or the mailbox is
   * already paused for longer, the rate_limited error is thrown with its retryAfterSeconds so the caller
   * can reschedule the work instead of holding it in memory for an hour. A send over the daily budget
   * is refused the same way (reason `daily_budget`), without calling Gmail.
   *
   * A send takes its unit of the daily budget as a new send, one not yet recorded: the callers
   * claim it (its `sending` row) inside `call`, after the grant. `alreadyCounted`, asked before
   * each attempt, says the send's row exists (claimed in an earlier attempt): the retry then
   * takes quota and pace only, not a second unit.
   *
   * `signal`: the caller gives up (a send worker that stops). While the call waits for its turn —
   * queued, or at the head between two store calls — or waits out a retry's backoff, an abort
   * takes it out at once: `run` rejects with `signal.reason`, having taken nothing (no units, no
   * pace slot, no unit of the budget); the next in line is served as before. Once the store is
   * being asked for its grant, the answer decides: granted, the call runs (the caller's own
   * check refuses it — the send gate sees the worker stopping — and the units it took are
   * spent); not granted, it leaves then.
   */
  async run<T>(
    mailboxId: string,
    units: number,
    call: () => Promise<T>,
    options: { send?: boolean; alreadyCounted?: () => boolean; onPaused?: () => void; signal?: AbortSignal } = {},
  ): Promise<T> {
    if (!Number.isFinite(units) || units < 0 || units > this.policy.burstUnits) {
      throw new RangeError(`units must be between 0 and ${this.policy.burstUnits}`);
    }
    const { signal } = options;
    for (let attempt = 1; ; attempt++) {
      await this.takeTurn(mailboxId, units, options.send === true, options.alreadyCounted?.() === true, options.onPaused, signal);
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof GmailError) || !error.retryable) throw error;
        const retryAfterMs = (error.retryAfterSeconds ?? 0) * 1000;
        const delayMs = Math.max(retryAfterMs, this.jitteredBackoff(attempt));
        if (error.kind === 'rate_limited') await this.store.pause(mailboxId, delayMs, this.now?.());
        if (attempt >= this.maxAttempts || delayMs > this.maxDelayMs) throw error;
        await unlessAborted(this.sleep(delayMs, signal), signal);
      }
    }
  }

  /**
   * When the mailbox may next call Gmail (ms epoch) if it is paused by a rate limit, else undefined — shown to users as "why sending waits".
   * (Was the synchronous `pausedUntil` when pauses lived in memory; renamed so that a caller left unawaited fails to compile instead of always seeing a pause.)
   */
  pauseEndsAt(mailboxId: string): Promise<number | undefined> {
    return this.store.pausedUntil(mailboxId, this.now?.());
  }

  /** The mailbox's daily budget was changed: its headroom is counted again. `tx`: the transaction that changes the budget. */
  budgetChanged(mailboxId: string, tx?: Db): Promise<void> {
    return this.store.budgetChanged(mailboxId, tx);
  }

  /**
   * A reconnect, a disconnect (or a revoked grant): lift any pause and count the budget again;
   * quota already spent stays spent. This process's callers of the mailbox then ask the store at
   * once instead of sleeping out a wait it answered before: a pause lifted, or a send refused —
   * `mailbox_gone` when disconnected, `auth_revoked` (`needs_reconnect`) when its grant was refused.
   */
  async forget(mailboxId: string): Promise<void> {
    await this.store.forget(mailboxId, this.now?.());
    for (const queue of [`${mailboxId}:send`, `${mailboxId}:other`]) this.naps.get(queue)?.abort();
  }

  /** Full jitter: anywhere between 0 and the exponential cap, so retrying callers spread out. */
  private jitteredBackoff(attempt: number): number {
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * cap);
  }

  /**
   * Callers of a queue wait in line; the head asks the store, and — for sends when no pace is
   * configured — asks for itself and the sends queued behind it in one store call (one SQL
   * statement for the group, issue #14), releasing as many as were granted. With a pace,
   * sends go one by one, evenly spaced. A refusal (daily budget, long pause, mailbox gone)
   * goes to the head only: the next in line asks again, as each caller always did. A group
   * is all new sends or all counted ones (retries), as the store takes the budget for a group.
   * A caller whose signal aborts leaves its queue at once unless it is in a store call (`run`).
   */
  private takeTurn(mailboxId: string, units: number, send: boolean, counted: boolean, onPaused?: () => void, signal?: AbortSignal): Promise<void> {
    const queue = `${mailboxId}:${send ? 'send' : 'other'}`;
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const existing = this.waiting.get(queue);
      const waiters = existing ?? [];
      const leave = () => {
        // Being asked for: serve drops it after the answer unless granted.
        if (waiter.asking) return;
        const at = waiters.indexOf(waiter);
        if (at >= 0) waiters.splice(at, 1)[0]!.reject(signal!.reason);
        // The last caller gone: its serve loop wakes and ends, leaving no timer behind.
        if (waiters.length === 0) this.naps.get(queue)?.abort();
      };
      const settled = () => signal?.removeEventListener('abort', leave);
      const waiter: Waiter = {
        units,
        counted,
        onPaused,
        signal,
        resolve: () => (settled(), resolve()),
        reject: (error) => (settled(), reject(error)),
      };
      signal?.addEventListener('abort', leave, { once: true });
      waiters.push(waiter);
      if (existing) return;
      this.waiting.set(queue, waiters);
      void this.serve(queue, mailboxId, send, waiters);
    });
  }

  private async serve(queue: string, mailboxId: string, send: boolean, waiters: Waiter[]): Promise<void> {
    // A microtask first: callers that start in the same tick (a round of sends) join the head.
    await Promise.resolve();
    while (waiters.length > 0) {
      const head = waiters[0]!;
      let count = 1;
      if (send && this.policy.sendsPerMinute === UNPACED) {
        const joins = (w: Waiter) => w.units === head.units && w.counted === head.counted;
        while (count < waiters.length && joins(waiters[count]!) && (count + 1) * head.units <= this.policy.burstUnits) count += 1;
      }
      // From here until the answer, an abort does not take these out: a grant is taken for them.
      const asking = waiters.slice(0, count);
      for (const w of asking) w.asking = true;
      const answer = await this.store
        .take(mailboxId, head.units, send, this.policy, this.now?.(), count, head.counted)
        .catch((error: unknown) => ({ kind: 'failed' as const, error }));
      for (const w of asking) w.asking = false;
      if (answer.kind === 'granted') {
        // Those that gave up meanwhile run too (the grant decides, see `run`): the asking ones lead the queue.
        for (const waiter of waiters.splice(0, Math.max(1, answer.count))) waiter.resolve();
        continue;
      }
      // Not granted: whoever gave up while the store answered leaves now, before any wait.
      for (const w of asking) if (w.signal?.aborted && waiters.includes(w)) waiters.splice(waiters.indexOf(w), 1)[0]!.reject(w.signal.reason);
      if (waiters.length === 0) break;
      if (answer.kind === 'wait') {
        await this.nap(queue, Math.max(1, Math.ceil(answer.waitMs)));
      } else if (answer.kind === 'paused' && answer.waitMs <= this.maxDelayMs) {
        // A pause holds every call queued behind it: each is told (a send's round stops waiting for it).
        waiters.forEach((w) => w.onPaused?.());
        await this.nap(queue, answer.waitMs);
      } else if (waiters[0] === head) {
        // A refusal, or the store failed: the head's alone (unless it gave up meanwhile); the next in line asks again.
        waiters.shift()!.reject(answer.kind === 'failed' ? answer.error : refusalOf(answer));
      }
    }
    this.waiting.delete(queue);
  }

  /** The serve loop's wait, cut short when its last caller leaves or `forget` wakes it (the loop then asks again, or ends). */
  private async nap(queue: string, ms: number): Promise<void> {
    const nap = new AbortController();
    this.naps.set(queue, nap);
    try {
      // Raced with the abort too: a `sleep` passed in that ignores the signal still wakes the loop.
      await Promise.race([this.sleep(ms, nap.signal), new Promise<void>((resolve) => nap.signal.addEventListener('abort', () => resolve(), { once: true }))]);
    } finally {
      this.naps.delete(queue);
    }
  }
}
