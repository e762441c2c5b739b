import { and, eq, lte, type SQL } from 'drizzle-orm';
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

const claimOf = (claim: ClaimOf): SQL =>
  'claimedAt' in claim ? eq(idempotencyKeys.createdAt, claim.claimedAt) : eq(idempotencyKeys.messageId, claim.messageId);

export function createIdempotencyRepo(db: Db) {
  return {
    /**
     * Takes the key for a new request: true when this request is the first (the row is
     * inserted `in_progress`), false when a live row exists. An expired row is dropped first.
     * Two racing requests both try the insert; the primary key lets exactly one through.
     */
    async claim(scope: IdempotencyScope, requestHash: string, at: Date, expiresAt: Date): Promise<boolean> {
      await db.delete(idempotencyKeys).where(and(matches(scope), lte(idempotencyKeys.expiresAt, at)));
      const inserted = await db
        .insert(idempotencyKeys)
        .values({ ...scope, requestHash, state: 'in_progress', createdAt: at, expiresAt })
        .onConflictDoNothing()
        .returning({ key: idempotencyKeys.key });
      return inserted.length === 1;
    },

    async find(scope: IdempotencyScope): Promise<IdempotencyKeyRow | undefined> {
      const [row] = await db.select().from(idempotencyKeys).where(matches(scope)).limit(1);
      return row;
    },

    async complete(scope: IdempotencyScope, claim: ClaimOf, status: number, body: unknown): Promise<void> {
      await db
        .update(idempotencyKeys)
        .set({ state: 'completed', responseStatus: status, responseBody: body ?? null })
        .where(and(matches(scope), eq(idempotencyKeys.state, 'in_progress'), claimOf(claim)));
    },

    /**
     * Links the key of a request still running to the 1:1 send it claimed: called with the
     * claim's own transaction (messages.repo.ts), so the message never exists without its key
     * knowing it, and a retry after a crash can answer its state.
     */
    async linkMessage(scope: IdempotencyScope, messageId: string): Promise<void> {
      await db
        .update(idempotencyKeys)
        .set({ messageId })
        .where(and(matches(scope), eq(idempotencyKeys.state, 'in_progress')));
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
