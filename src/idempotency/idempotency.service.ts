import { AppError, ConflictError, UnprocessableError } from '../errors.js';
import type { IdempotencyRepo, IdempotencyScope } from './idempotency.repo.js';

/** An answer is replayed for 24 hours after the first request. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** `claimedAt`: which claim of the key this request holds, for `finish` (idempotency.repo.ts ClaimOf). */
export type IdempotencyStart = { kind: 'first'; claimedAt: Date } | { kind: 'replay'; status: number; body: unknown };

/**
 * The answer for a key left `in_progress` whose request linked a message (a 1:1 send's claim):
 * that message's state as the route answers it, or undefined while the first request may still
 * be running. Throws the route's error when the message shows that nothing went out.
 */
export type ResumeClaimed = (messageId: string) => Promise<{ status: number; body: unknown } | undefined>;

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

  /**
   * An error answer means nothing went out: the key is freed, as the first request would have
   * (finish) — only while it is still the claim linked to this message: the first request, alive
   * after all, may have freed it meanwhile and a retry claimed it again for a send of its own.
   */
  async function resumeOrRelease(scope: IdempotencyScope, messageId: string, resume: ResumeClaimed) {
    try {
      return await resume(messageId);
    } catch (error) {
      if (error instanceof AppError) await repo.release(scope, { messageId });
      throw error;
    }
  }

  return {
    async begin(scope: IdempotencyScope, requestHash: string, resume?: ResumeClaimed): Promise<IdempotencyStart> {
      const at = now();
      if (await repo.claim(scope, requestHash, at, new Date(at.getTime() + IDEMPOTENCY_WINDOW_MS))) return { kind: 'first', claimedAt: at };
      const existing = await repo.find(scope);
      // Released or expired between our insert and this read: try once more.
      if (!existing) {
        if (await repo.claim(scope, requestHash, at, new Date(at.getTime() + IDEMPOTENCY_WINDOW_MS))) return { kind: 'first', claimedAt: at };
        throw new ConflictError('idempotency_in_progress', 'A request with this Idempotency-Key is being processed; retry shortly');
      }
      if (existing.requestHash !== requestHash) {
        throw new UnprocessableError('idempotency_key_reused', 'This Idempotency-Key was used with a different request; use a new key');
      }
      if (existing.state === 'in_progress') {
        // A crash leaves the key here for its whole window; the message the first request claimed
        // tells what happened. The route is never run again for this key.
        const answer = existing.messageId && resume ? await resumeOrRelease(scope, existing.messageId, resume) : undefined;
        if (answer) return { kind: 'replay', ...answer };
        throw new ConflictError(
          'idempotency_in_progress',
          'A request with this Idempotency-Key is being processed; retry shortly',
          existing.messageId ? { messageId: existing.messageId } : undefined,
        );
      }
      return { kind: 'replay', status: existing.responseStatus ?? 200, body: existing.responseBody };
    },

    /** The periodic sweep (src/jobs.ts): answers past their 24 hours are of no use to anyone. */
    sweepExpired(): Promise<number> {
      return repo.deleteExpired(now());
    },

    /** Keeps a successful answer for replay, or frees the key after a refusal: the key as this request claimed it (`claimedAt`, from begin). */
    finish(scope: IdempotencyScope, claimedAt: Date, status: number, body: unknown): Promise<void> {
      const claim = { claimedAt };
      return status >= 200 && status < 300 ? repo.complete(scope, claim, status, body) : repo.release(scope, claim);
    },
  };
}

export type IdempotencyService = ReturnType<typeof createIdempotencyService>;
