import { AppError, ConflictError, UnprocessableError } from '../errors.js';
import type { IdempotencyClaim, IdempotencyRepo, IdempotencyScope } from './idempotency.repo.js';

/** An answer is replayed for 24 hours after the first request. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** How long a request's key lease lasts without renewal (the composition root passes SEND_LEASE_SECONDS); it is renewed at each third. */
const DEFAULT_LEASE_MS = 240_000;

/** `claimedAt`: which claim of the key this request holds, for `finish` (idempotency.repo.ts ClaimOf). */
export type IdempotencyStart = { kind: 'first'; claimedAt: Date } | { kind: 'replay'; status: number; body: unknown };

/** `hold`'s answer: a replay, or the key this request holds (its claim, and its end with the request's answer). */
export type HeldKey =
  | { kind: 'replay'; status: number; body: unknown }
  | { kind: 'first'; claim: IdempotencyClaim; finish: (status: number, body: unknown) => Promise<void> };

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
export function createIdempotencyService(deps: { repo: IdempotencyRepo; now?: () => Date; leaseMs?: number }) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());
  const leaseMs = deps.leaseMs ?? DEFAULT_LEASE_MS;
  const later = (at: Date, ms: number) => new Date(at.getTime() + ms);

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

  /**
   * `resume`: the route links its side effect to the key in that effect's own transaction (a 1:1
   * send's claim: messages.repo.ts). Only then does the key carry a lease until the link, and only
   * then may a retry take over a key whose request is gone (lease expired) and linked nothing:
   * nothing was done, so the route runs for the retry. A route whose effect may commit unlinked
   * (creating or launching a campaign) never takes over: its crashed key stays 409 until it expires.
   */
  async function begin(scope: IdempotencyScope, requestHash: string, resume?: ResumeClaimed): Promise<IdempotencyStart> {
    const at = now();
    const windowEnd = later(at, IDEMPOTENCY_WINDOW_MS);
    const lease = resume ? later(at, leaseMs) : null;
    if (await repo.claim(scope, requestHash, at, windowEnd, lease)) return { kind: 'first', claimedAt: at };
    const existing = await repo.find(scope);
    // Released or expired between our insert and this read: try once more.
    if (!existing) {
      if (await repo.claim(scope, requestHash, at, windowEnd, lease)) return { kind: 'first', claimedAt: at };
      throw new ConflictError('idempotency_in_progress', 'A request with this Idempotency-Key is being processed; retry shortly');
    }
    if (existing.requestHash !== requestHash) {
      throw new UnprocessableError('idempotency_key_reused', 'This Idempotency-Key was used with a different request; use a new key');
    }
    if (existing.state === 'in_progress') {
      // A crash leaves the key here; the message the first request claimed tells what happened,
      // and the route is never run again for it. With no message linked and the lease over,
      // the first request is gone and did nothing: this retry takes the key and runs the route.
      const answer = existing.messageId && resume ? await resumeOrRelease(scope, existing.messageId, resume) : undefined;
      if (answer) return { kind: 'replay', ...answer };
      const gone = resume && !existing.messageId && existing.leaseExpiresAt !== null && existing.leaseExpiresAt < at;
      if (gone && (await repo.takeOver(scope, existing.createdAt, at, windowEnd, lease!))) return { kind: 'first', claimedAt: at };
      throw new ConflictError(
        'idempotency_in_progress',
        'A request with this Idempotency-Key is being processed; retry shortly',
        existing.messageId ? { messageId: existing.messageId } : undefined,
      );
    }
    return { kind: 'replay', status: existing.responseStatus ?? 200, body: existing.responseBody };
  }

  /**
   * Renews the lease of a request that will link its side effect (begin's `resume`) while it
   * runs, until it links it or the key is no longer its claim; returns the stop for its answer.
   * A renewal that fails (the database unreachable for a while) may let the lease lapse under a
   * live request: a retry then takes the key over, and this request's claim refuses to send
   * (lockClaim), so the mail still goes out once.
   */
  function keepLease(claim: IdempotencyClaim, onError: (error: unknown) => void): () => void {
    const timer = setInterval(() => {
      repo.renewLease(claim, later(now(), leaseMs)).then((held) => held || clearInterval(timer), onError);
    }, leaseMs / 3);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Keeps a successful answer for replay, or frees the key after a refusal: the key as this request claimed it (`claimedAt`, from begin). */
  function finish(scope: IdempotencyScope, claimedAt: Date, status: number, body: unknown): Promise<void> {
    const claim = { claimedAt };
    return status >= 200 && status < 300 ? repo.complete(scope, claim, status, body) : repo.release(scope, claim);
  }

  /**
   * A request's hold on its key, from begin to its answer, for every user of a key (the API's
   * middleware, the web compose form): with `resume` the key carries a lease, renewed while the
   * request runs, that its claim ends by linking the send (`claim`, passed to the route's service);
   * `finish` stops the renewal and keeps the answer or frees the key. One path, so a caller cannot
   * begin a key without the lease that lets a retry take it over after a crash.
   */
  async function hold(scope: IdempotencyScope, requestHash: string, options: { resume?: ResumeClaimed; onLeaseError?: (error: unknown) => void } = {}): Promise<HeldKey> {
    const start = await begin(scope, requestHash, options.resume);
    if (start.kind === 'replay') return start;
    const claim = { scope, claimedAt: start.claimedAt };
    const stopLease = options.resume ? keepLease(claim, options.onLeaseError ?? (() => undefined)) : undefined;
    return {
      kind: 'first',
      claim,
      finish: (status, body) => {
        stopLease?.();
        return finish(scope, start.claimedAt, status, body);
      },
    };
  }

  return {
    begin,
    hold,
    /** The periodic sweep (src/jobs.ts): answers past their 24 hours are of no use to anyone. */
    sweepExpired(): Promise<number> {
      return repo.deleteExpired(now());
    },

    finish,
  };
}

export type IdempotencyService = ReturnType<typeof createIdempotencyService>;
