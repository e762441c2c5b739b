import { ConflictError, UnprocessableError } from '../errors.js';
import type { IdempotencyRepo, IdempotencyScope } from './idempotency.repo.js';

/** An answer is replayed for 24 hours after the first request. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

export type IdempotencyStart = { kind: 'first' } | { kind: 'replay'; status: number; body: unknown };

/**
 * The rules of `Idempotency-Key`: the first request with a key runs; while it runs, the same
 * request again is told so (409 `idempotency_in_progress`, retry later) rather than waiting
 * on a Gmail call of unknown length; afterwards it gets the first answer back. The key with
 * a different request is a client bug (422 `idempotency_key_reused`). Only successful answers
 * are kept: a refused request changed nothing, so the key is free again for a corrected one.
 */
export function createIdempotencyService(deps: { repo: IdempotencyRepo; now?: () => Date }) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());

  return {
    async begin(scope: IdempotencyScope, requestHash: string): Promise<IdempotencyStart> {
      const at = now();
      if (await repo.claim(scope, requestHash, at, new Date(at.getTime() + IDEMPOTENCY_WINDOW_MS))) return { kind: 'first' };
      const existing = await repo.find(scope);
      // Released or expired between our insert and this read: try once more.
      if (!existing) {
        if (await repo.claim(scope, requestHash, at, new Date(at.getTime() + IDEMPOTENCY_WINDOW_MS))) return { kind: 'first' };
        throw new ConflictError('idempotency_in_progress', 'A request with this Idempotency-Key is being processed; retry shortly');
      }
      if (existing.requestHash !== requestHash) {
        throw new UnprocessableError('idempotency_key_reused', 'This Idempotency-Key was used with a different request; use a new key');
      }
      if (existing.state === 'in_progress') {
        throw new ConflictError('idempotency_in_progress', 'A request with this Idempotency-Key is being processed; retry shortly');
      }
      return { kind: 'replay', status: existing.responseStatus ?? 200, body: existing.responseBody };
    },

    /** The periodic sweep (src/jobs.ts): answers past their 24 hours are of no use to anyone. */
    sweepExpired(): Promise<number> {
      return repo.deleteExpired(now());
    },

    /** Keeps a successful answer for replay, or frees the key after a refusal. */
    finish(scope: IdempotencyScope, status: number, body: unknown): Promise<void> {
      return status >= 200 && status < 300 ? repo.complete(scope, status, body) : repo.release(scope);
    },
  };
}

export type IdempotencyService = ReturnType<typeof createIdempotencyService>;
