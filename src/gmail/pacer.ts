import { GmailError } from './gmail-errors.js';

/**
 * Every Gmail call for a mailbox goes through that mailbox's pacer, so the service as a whole
 * stays inside Google's per-user quota instead of discovering it through 429s, and retries
 * happen in one place with one policy.
 *
 * State lives in memory per process: one process drives a mailbox at a time (the send ledger
 * claims work per mailbox), so a shared store would buy nothing but latency.
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
  /** Tries per `run`, the first one included; default 6. */
  maxAttempts?: number;
  /** First backoff cap; doubles with every retry; default 500. */
  baseDelayMs?: number;
  /** Longest backoff, and the longest any single wait inside `run` may be; default 60_000. */
  maxDelayMs?: number;
  /** ms clock, default Date.now. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** For jitter, default Math.random. */
  random?: () => number;
}

interface MailboxState {
  /** Units available now, up to a full minute's worth. */
  tokens: number;
  /** When `tokens` was last brought up to date; in the future while a rate-limit pause holds refill back. */
  refilledAt: number;
  pausedUntil?: number;
  /** The last caller waiting for units; the next one queues behind it so units are handed out first come, first served. */
  queueTail: Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function requireNumber(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min) throw new RangeError(`${name} must be a finite number ≥ ${min}`);
  return value;
}

export class MailboxPacer {
  private readonly unitsPerMinute: number;
  private readonly unitsPerMs: number;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly mailboxes = new Map<string, MailboxState>();

  constructor(options: PacerOptions = {}) {
    this.unitsPerMinute = requireNumber('unitsPerMinute', options.unitsPerMinute ?? 15_000, Number.MIN_VALUE);
    this.unitsPerMs = this.unitsPerMinute / 60_000;
    this.maxAttempts = Math.floor(requireNumber('maxAttempts', options.maxAttempts ?? 6, 1));
    this.baseDelayMs = requireNumber('baseDelayMs', options.baseDelayMs ?? 500, 0);
    this.maxDelayMs = requireNumber('maxDelayMs', options.maxDelayMs ?? 60_000, this.baseDelayMs);
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
  }

  /**
   * Waits for `units` of the mailbox's per-minute quota (token bucket refilled continuously), runs `call`, and retries
   * GmailError kinds rate_limited/temporary with exponential backoff + full jitter, never sooner than the error's retryAfterSeconds.
   * A rate_limited answer pauses the whole mailbox (other calls for it wait too) until Retry-After has passed.
   * auth_revoked / not_found / permanent are rethrown at once; after maxAttempts the last GmailError is rethrown.
   * Errors that are not GmailError are rethrown at once (the caller's gmail client converts with toGmailError before they get here).
   *
   * No single wait exceeds `maxDelayMs`: when Google asks for longer (a daily limit), or the mailbox is
   * already paused for longer, the rate_limited error is thrown with its retryAfterSeconds so the caller
   * can reschedule the work instead of holding it in memory for an hour.
   */
  async run<T>(mailboxId: string, units: number, call: () => Promise<T>): Promise<T> {
    if (!Number.isFinite(units) || units < 0 || units > this.unitsPerMinute) {
      throw new RangeError(`units must be between 0 and ${this.unitsPerMinute}`);
    }
    for (let attempt = 1; ; attempt++) {
      const state = this.stateOf(mailboxId);
      await this.takeTurn(state, units);
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof GmailError) || !error.retryable) throw error;
        const retryAfterMs = (error.retryAfterSeconds ?? 0) * 1000;
        const delayMs = Math.max(retryAfterMs, this.jitteredBackoff(attempt));
        if (error.kind === 'rate_limited') this.pause(state, delayMs);
        if (attempt >= this.maxAttempts || delayMs > this.maxDelayMs) throw error;
        await this.sleep(delayMs);
      }
    }
  }

  /** When the mailbox may next call Gmail (ms epoch) if it is paused by a rate limit, else undefined — shown to users as "why sending waits". */
  pausedUntil(mailboxId: string): number | undefined {
    const until = this.mailboxes.get(mailboxId)?.pausedUntil;
    return until !== undefined && until > this.now() ? until : undefined;
  }

  /** Forget a mailbox's state (disconnect). */
  forget(mailboxId: string): void {
    this.mailboxes.delete(mailboxId);
  }

  private stateOf(mailboxId: string): MailboxState {
    let state = this.mailboxes.get(mailboxId);
    if (!state) {
      // A new mailbox starts with a full minute of quota, as Google's own window would allow.
      state = { tokens: this.unitsPerMinute, refilledAt: this.now(), queueTail: Promise.resolve() };
      this.mailboxes.set(mailboxId, state);
    }
    return state;
  }

  /** Full jitter: anywhere between 0 and the exponential cap, so retrying callers spread out. */
  private jitteredBackoff(attempt: number): number {
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * cap);
  }

  private pause(state: MailboxState, ms: number): void {
    const until = this.now() + ms;
    state.pausedUntil = Math.max(state.pausedUntil ?? 0, until);
    // Google says our estimate was wrong (other apps share the user's quota): start again from an
    // empty bucket after the pause instead of bursting a full minute's worth into the same wall.
    state.tokens = 0;
    state.refilledAt = Math.max(state.refilledAt, state.pausedUntil);
  }

  private takeTurn(state: MailboxState, units: number): Promise<void> {
    const turn = state.queueTail.then(() => this.takeUnits(state, units));
    // A caller that gives up (paused too long) must not block the ones behind it.
    state.queueTail = turn.catch(() => undefined);
    return turn;
  }

  private async takeUnits(state: MailboxState, units: number): Promise<void> {
    for (;;) {
      const now = this.now();
      if (state.pausedUntil !== undefined && state.pausedUntil > now) {
        const remainingMs = state.pausedUntil - now;
        if (remainingMs > this.maxDelayMs) {
          throw new GmailError('rate_limited', 'Gmail mailbox is paused by a rate limit', {
            reason: 'mailbox_paused',
            retryAfterSeconds: Math.ceil(remainingMs / 1000),
          });
        }
        await this.sleep(remainingMs);
        continue;
      }
      if (now > state.refilledAt) {
        state.tokens = Math.min(this.unitsPerMinute, state.tokens + (now - state.refilledAt) * this.unitsPerMs);
        state.refilledAt = now;
      }
      if (state.tokens >= units) {
        state.tokens -= units;
        return;
      }
      const untilRefilledMs = state.refilledAt > now ? state.refilledAt - now : 0;
      await this.sleep(Math.max(1, untilRefilledMs + Math.ceil((units - state.tokens) / this.unitsPerMs)));
    }
  }
}
