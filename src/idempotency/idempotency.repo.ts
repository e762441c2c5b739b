import { and, eq, isNotNull, isNull, lt, lte, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { idempotencyKeys, type IdempotencyKeyRow } from '../db/schema.js';

export interface IdempotencyScope {
  workspaceId: string;
  caller: string;
  route: string;
  key: string;
}

const matches = (scope: IdempotencyScope) =>
  and(
    eq(idempotencyKeys.workspaceId, scope.workspaceId),
    eq(idempotencyKeys.caller, scope.caller),
    eq(idempotencyKeys.route, scope.route),
    eq(idempotencyKeys.key, scope.key),
  );

/**
 * Which claim of a key a write is for: a key freed (a refusal) can be claimed again at once by a
 * retry, and a write meant for the claim before must not end that one (it would let a third
 * request run the route beside it). `claimedAt`: the claim's own `created_at` (written from the
 * app's Date, so it compares exactly); `messageId`: the send that claim linked.
 */
export type ClaimOf = { claimedAt: Date } | { messageId: string };

/** A request's hold on its key: the key, and which claim of it (`created_at`, see ClaimOf). */
export interface IdempotencyClaim {
  scope: IdempotencyScope;
  claimedAt: Date;
}

const claimOf = (claim: ClaimOf): SQL =>
  'claimedAt' in claim ? eq(idempotencyKeys.createdAt, claim.claimedAt) : eq(idempotencyKeys.messageId, claim.messageId);

export function createIdempotencyRepo(db: Db) {
  return {
    /**
     * Takes the key for a new request: true when this request is the first (the row is
     * inserted `in_progress`), false when a live row exists. An expired row is dropped first.
     * Two racing requests both try the insert; the primary key lets exactly one through.
     */
    /** `leaseExpiresAt`: for a route that links its side effect, the liveness of this request until it does (takeOver). */
    async claim(scope: IdempotencyScope, requestHash: string, at: Date, expiresAt: Date, leaseExpiresAt: Date | null = null): Promise<boolean> {
      await db.delete(idempotencyKeys).where(and(matches(scope), lte(idempotencyKeys.expiresAt, at)));
      const inserted = await db
        .insert(idempotencyKeys)
        .values({ ...scope, requestHash, state: 'in_progress', createdAt: at, expiresAt, leaseExpiresAt })
        .onConflictDoNothing()
        .returning({ key: idempotencyKeys.key });
      return inserted.length === 1;
    },

    async find(scope: IdempotencyScope): Promise<IdempotencyKeyRow | undefined> {
      const [row] = await db.select().from(idempotencyKeys).where(matches(scope)).limit(1);
      return row;
    },

    /**
     * A retry takes over the key of a request that is provably gone and did nothing: still the
     * claim the retry read (`seenClaimedAt`), `in_progress`, no message linked, its lease set and
     * expired. One statement, so two retries cannot both take it, and a claim linking its message
     * at the same moment wins or loses whole (the link runs in the claim's transaction and holds
     * the row). The key becomes this retry's claim: `created_at` is `at` (so the gone request's
     * late finish or link matches nothing), a new window and a live lease.
     */
    async takeOver(scope: IdempotencyScope, seenClaimedAt: Date, at: Date, expiresAt: Date, leaseExpiresAt: Date): Promise<boolean> {
      const taken = await db
        .update(idempotencyKeys)
        .set({ createdAt: at, expiresAt, leaseExpiresAt })
        .where(
          and(
            matches(scope),
            eq(idempotencyKeys.state, 'in_progress'),
            eq(idempotencyKeys.createdAt, seenClaimedAt),
            isNull(idempotencyKeys.messageId),
            isNotNull(idempotencyKeys.leaseExpiresAt),
            lt(idempotencyKeys.leaseExpiresAt, at),
          ),
        )
        .returning({ key: idempotencyKeys.key });
      return taken.length === 1;
    },

    /** Keeps the lease of a request still running and not linked yet; false once the key is no longer this claim's or is linked (nothing left to renew). */
    async renewLease(claim: IdempotencyClaim, leaseExpiresAt: Date): Promise<boolean> {
      const renewed = await db
        .update(idempotencyKeys)
        .set({ leaseExpiresAt })
        .where(and(matches(claim.scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim), isNotNull(idempotencyKeys.leaseExpiresAt)))
        .returning({ key: idempotencyKeys.key });
      return renewed.length === 1;
    },

    async complete(scope: IdempotencyScope, claim: ClaimOf, status: number, body: unknown): Promise<void> {
      await db
        .update(idempotencyKeys)
        .set({ state: 'completed', responseStatus: status, responseBody: body ?? null, leaseExpiresAt: null })
        .where(and(matches(scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim)));
    },

    /**
     * Whether the key is still this request's claim, locked until the transaction ends: the send
     * claim asks it first, in its own transaction (messages.repo.ts), and claims nothing when a
     * retry took the key over meanwhile (this request had looked gone: a stall outlasted its lease).
     */
    async lockClaim(claim: IdempotencyClaim): Promise<boolean> {
      const held = await db
        .select({ key: idempotencyKeys.key })
        .from(idempotencyKeys)
        .where(and(matches(claim.scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim)))
        .for('update');
      return held.length === 1;
    },

    /**
     * Links the key of a request still running to the 1:1 send it claimed: called with the
     * claim's own transaction after lockClaim (messages.repo.ts), so the message never exists
     * without its key knowing it, and a retry after a crash can answer its state. The lease ends
     * here: from now on the send's own lease tells whether the request may still be running.
     */
    async linkMessage(claim: IdempotencyClaim, messageId: string): Promise<void> {
      await db
        .update(idempotencyKeys)
        .set({ messageId, leaseExpiresAt: null })
        .where(and(matches(claim.scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim)));
    },

    /** Drops every answer past its window; returns how many. */
    async deleteExpired(at: Date): Promise<number> {
      return (await db.delete(idempotencyKeys).where(lte(idempotencyKeys.expiresAt, at)).returning({ key: idempotencyKeys.key })).length;
    },

    /** Frees the key of this claim (never a later claim of the same key: ClaimOf). */
    async release(scope: IdempotencyScope, claim: ClaimOf): Promise<void> {
      await db.delete(idempotencyKeys).where(and(matches(scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim)));
    },
  };
}

export type IdempotencyRepo = ReturnType<typeof createIdempotencyRepo>;
