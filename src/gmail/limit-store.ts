import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/**
 * Where a mailbox's limits live. The SQL store is the real one: every process shares one
 * row per mailbox (invariant 10), changed in one locked step per Gmail call. The memory
 * store keeps the quota and pace rules for one process without a database (unit tests,
 * benchmarks), but not the daily budget (it cannot count sent mail): the service always
 * uses the SQL store.
 */

export interface LimitPolicy {
  /** Gmail's per-user quota per minute (15,000). */
  unitsPerMinute: number;
  /**
   * Most units the bucket holds. It refills at (unitsPerMinute − burstUnits) a minute, so no
   * 60 s window ever sees more than unitsPerMinute, however many processes share it.
   */
  burstUnits: number;
  /** Sends per minute per mailbox, spaced evenly (a bucket of one send). */
  sendsPerMinute: number;
  /** When the daily-budget headroom runs out, how long before the sent messages are counted again. */
  budgetRecountMs: number;
  /**
   * How long a granted send may take to become a `sending` row (its claim runs after the
   * grant): a recount waits until the last grant is this old, so that it counts every send granted.
   */
  budgetClaimGraceMs: number;
}

export type TakeOutcome =
  /** `count` of the calls asked for (at least one) may go now. */
  | { kind: 'granted'; count: number }
  /** Not yet: ask again after waitMs. */
  | { kind: 'wait'; waitMs: number }
  /** A rate-limit pause holds for waitMs more. */
  | { kind: 'paused'; waitMs: number }
  /** The mailbox's Gmail account (every record of its address) has sent its daily budget in the last 24 hours. */
  | { kind: 'budget_exhausted' }
  /** No such mailbox (purged), or for a new send (not `counted`), its mailbox disconnected meanwhile (marked deleted: migration 0064). */
  | { kind: 'unknown_mailbox' }
  /** For a new send (not `counted`): Google refused its mailbox's grant meanwhile (marked needs_reconnect: migration 0065). */
  | { kind: 'needs_reconnect' };

export interface LimitStore {
  /**
   * Takes `units` (and, for a send, one send of the pace and of the daily budget) for as many
   * of `count` calls (default 1) as fit now, at least one, or says why not. A group of sends
   * empties the bucket of one send below zero, so ask for more than one only when sends are
   * not paced. `counted`: the sends already hold their unit of the budget (retries whose
   * claim ran in an earlier attempt), so they take quota and pace only; by default they are
   * new sends, not yet in `messages`. `now` only with a test clock.
   */
  take(mailboxId: string, units: number, send: boolean, policy: LimitPolicy, now?: number, count?: number, counted?: boolean): Promise<TakeOutcome>;
  /** Pauses every call for the mailbox for `ms` (a 429's Retry-After), and empties its bucket. */
  pause(mailboxId: string, ms: number, now?: number): Promise<void>;
  /** ms epoch the pause lasts until, or undefined. */
  pausedUntil(mailboxId: string, now?: number): Promise<number | undefined>;
  /**
   * The daily budget changed: count the sent messages again at the next send (of any record of
   * the address). `tx`: the transaction that changes the budget (the SQL store writes in it:
   * both commit or neither).
   */
  budgetChanged(mailboxId: string, tx?: Db): Promise<void>;
  /**
   * A reconnect: lift any pause and count the budget again. What was spent stays spent (Google
   * counts quota per user, whatever the grant), and a sync lease stays with its holder.
   */
  forget(mailboxId: string, now?: number): Promise<void>;
}

interface MemoryState {
  quota: number;
  quotaAt: number;
  sends: number;
  sendAt: number;
  pausedUntil?: number;
}

/** One process, no database; no daily budget (that needs the sent messages, which live in the database). */
export function createMemoryLimitStore(clock: () => number = Date.now): LimitStore {
  const states = new Map<string, MemoryState>();
  const stateOf = (mailboxId: string, policy: { burstUnits: number } | undefined, t: number) => {
    let state = states.get(mailboxId);
    if (!state) {
      state = { quota: policy?.burstUnits ?? 0, quotaAt: t, sends: 1, sendAt: t };
      states.set(mailboxId, state);
    }
    return state;
  };
  return {
    async take(mailboxId, units, send, policy, now = clock(), count = 1) {
      const state = stateOf(mailboxId, policy, now);
      if (state.pausedUntil !== undefined && state.pausedUntil > now) return { kind: 'paused', waitMs: state.pausedUntil - now };
      const quotaRate = (policy.unitsPerMinute - policy.burstUnits) / 60_000;
      const sendRate = policy.sendsPerMinute / 60_000;
      const quota = Math.min(policy.burstUnits, state.quota + Math.max(0, now - state.quotaAt) * quotaRate);
      const sends = Math.min(1, state.sends + Math.max(0, now - state.sendAt) * sendRate);
      const quotaWait = quota < units ? Math.max(0, state.quotaAt - now) + (units - quota) / quotaRate : 0;
      const sendWait = send && sends < 1 ? Math.max(0, state.sendAt - now) + (1 - sends) / sendRate : 0;
      if (quotaWait > 0 || sendWait > 0) return { kind: 'wait', waitMs: Math.max(quotaWait, sendWait) };
      const granted = units > 0 ? Math.max(1, Math.min(count, Math.floor(quota / units))) : Math.max(1, count);
      state.quota = quota - granted * units;
      state.quotaAt = Math.max(now, state.quotaAt);
      if (send) {
        state.sends = sends - granted;
        state.sendAt = Math.max(now, state.sendAt);
      }
      return { kind: 'granted', count: granted };
    },
    async pause(mailboxId, ms, now = clock()) {
      const state = stateOf(mailboxId, undefined, now);
      state.pausedUntil = Math.max(state.pausedUntil ?? 0, now + ms);
      state.quota = 0;
      state.quotaAt = Math.max(state.quotaAt, state.pausedUntil);
    },
    async pausedUntil(mailboxId, now = clock()) {
      const until = states.get(mailboxId)?.pausedUntil;
      return until !== undefined && until > now ? until : undefined;
    },
    async budgetChanged() {},
    async forget(mailboxId, now = clock()) {
      const state = states.get(mailboxId);
      if (!state) return;
      state.pausedUntil = undefined;
      state.quotaAt = Math.min(state.quotaAt, now);
    },
  };
}

const at = (now: number | undefined) => (now === undefined ? null : new Date(now).toISOString());

/**
 * The budget's headroom is the Gmail address's, shared by every record of it in any workspace
 * (`mailbox_budget_accounts`, migration 0054), beside each workspace's own
 * (`mailbox_budget_workspaces`, migration 0055): the next send from any of them counts both again.
 * The account's row first, as `mailbox_take_units` locks them.
 */
const countAgain = async (db: Db, mailboxId: string) => {
  const address = sql`(select lower(email) from mailboxes where id = ${mailboxId}::uuid)`;
  await db.execute(sql`update mailbox_budget_accounts set budget_used = null, budget_counted_at = null where address = ${address}`);
  await db.execute(sql`update mailbox_budget_workspaces set budget_used = null, budget_counted_at = null where address = ${address}`);
};

/** Ends the mailbox's rate-limit pause and nothing else (`forget` also has the daily budget counted again). */
export async function liftPause(db: Db, mailboxId: string, now?: number): Promise<void> {
  await db.execute(sql`update mailbox_limits set paused_until = null,
      quota_at = least(quota_at, coalesce(${at(now)}::timestamptz, clock_timestamp()))
    where mailbox_id = ${mailboxId}::uuid`);
}

/**
 * The real store: the `mailbox_limits` row, shared by every process on the database, and for the
 * daily budget the `mailbox_budget_accounts` row of the mailbox's address, shared by every record
 * of that Gmail account (reconnected, or connected in other workspaces).
 */
export function createSqlLimitStore(db: Db): LimitStore {
  return {
    async take(mailboxId, units, send, policy, now, count = 1, counted = false) {
      // Migration 0054's version: one locked step for a group of calls (`granted` of `count`), new sends or counted ones; the budget is the address's.
      // Its commit does not wait for the disk (synchronous_commit off for this statement's own
      // transaction): a grant matters only once its send is claimed, and the claim's synchronous
      // commit flushes the log up to itself, this grant included. A database crash can lose only
      // grants no claim followed, that is quota no send used. Saves a flush (~0.7 ms) a round.
      const [row] = rowsOf<{ outcome: string; wait_ms: number | string; granted: number | string }>(
        await db.execute(sql`select outcome, wait_ms, granted, set_config('synchronous_commit', 'off', true) from mailbox_take_units(
          ${mailboxId}::uuid, ${units}::double precision, ${send}::boolean,
          ${policy.unitsPerMinute}::double precision, ${policy.burstUnits}::double precision, ${policy.sendsPerMinute}::double precision,
          ${policy.budgetRecountMs}::double precision, ${at(now)}::timestamptz, ${count}::integer,
          ${counted}::boolean, ${policy.budgetClaimGraceMs}::double precision)`),
      );
      const waitMs = Math.max(1, Math.ceil(Number(row?.wait_ms ?? 0)));
      switch (row?.outcome) {
        case 'granted':
          return { kind: 'granted', count: Math.max(1, Number(row.granted)) };
        case 'wait':
          return { kind: 'wait', waitMs };
        case 'paused':
          return { kind: 'paused', waitMs };
        case 'budget_exhausted':
          return { kind: 'budget_exhausted' };
        case 'needs_reconnect':
          return { kind: 'needs_reconnect' };
        default:
          return { kind: 'unknown_mailbox' };
      }
    },

    async pause(mailboxId, ms, now) {
      // Starting again from an empty bucket after the pause: Google says our estimate was
      // wrong (other apps share the user's quota), so no burst into the same wall.
      await db.execute(sql`
        with t as (select coalesce(${at(now)}::timestamptz, clock_timestamp()) as now)
        insert into mailbox_limits (mailbox_id, quota_units, quota_at, send_tokens, send_at, paused_until)
        select m.id, 0, t.now + ${ms} * interval '1 millisecond', 1, t.now, t.now + ${ms} * interval '1 millisecond'
        from mailboxes m, t where m.id = ${mailboxId}::uuid
        on conflict (mailbox_id) do update set
          paused_until = greatest(coalesce(mailbox_limits.paused_until, excluded.paused_until), excluded.paused_until),
          quota_units = 0,
          quota_at = greatest(mailbox_limits.quota_at, coalesce(mailbox_limits.paused_until, excluded.paused_until), excluded.paused_until)`);
    },

    async pausedUntil(mailboxId, now) {
      const [row] = rowsOf<{ until: string | Date | null }>(
        await db.execute(sql`select paused_until as until from mailbox_limits
          where mailbox_id = ${mailboxId}::uuid and paused_until > coalesce(${at(now)}::timestamptz, clock_timestamp())`),
      );
      return row?.until ? new Date(row.until).getTime() : undefined;
    },

    async budgetChanged(mailboxId, tx = db) {
      await countAgain(tx, mailboxId);
    },

    async forget(mailboxId, now) {
      await liftPause(db, mailboxId, now);
      await countAgain(db, mailboxId);
    },
  };
}
