import { createHash } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import { actorOf } from '../auth/actor.js';
import { authOf } from '../auth/auth.middleware.js';
import { ValidationError } from '../errors.js';
import type { IdempotencyClaim } from './idempotency.repo.js';
import type { IdempotencyService, ResumeClaimed } from './idempotency.service.js';

/** Printable ASCII, as Stripe and the IETF draft use: a UUID or any opaque string the client makes. */
const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

/** What a key stands for: the method, the concrete path (the same key on another campaign's launch is another request) and the JSON body. */
export const requestHashOf = (method: string, pathname: string, body: unknown): string =>
  createHash('sha256').update(`${method} ${pathname}\n${JSON.stringify(body ?? null)}`).digest('hex');

/**
 * `resume`: a route whose request links what it does to its key in the same transaction (POST
 * /api/messages: the send's claim) answers a key a crash left `in_progress` from that message, and
 * a retry takes over a key whose request died before linking anything (idempotency.service.ts begin).
 */
export type IdempotentRoute = (route: string, options?: { resume?: (req: Parameters<RequestHandler>[0], messageId: string) => ReturnType<ResumeClaimed> }) => RequestHandler;

/** The key of the request being served and its claim of it, for a route that links what it claims to it (idempotency.repo.ts lockClaim, linkMessage); undefined without the header. */
export const idempotencyClaimOf = (res: Response): IdempotencyClaim | undefined => res.locals.idempotencyClaim as IdempotencyClaim | undefined;

/**
 * `Idempotency-Key` for one route (named by its pattern, e.g. `POST /api/campaigns/:id/launch`).
 * Runs after requireAuth, so the key is scoped per workspace, caller and route. The answer is
 * caught at `res.json` — every reply of these routes, errors included, goes through it — and
 * stored (or the key freed) before it is sent, so a retry can never see a half-written entry.
 */
export function idempotentRoute(service: IdempotencyService): IdempotentRoute {
  return (route, options) => async (req, res, next) => {
    const key = req.header('idempotency-key');
    if (key === undefined) return next();
    if (!KEY_SHAPE.test(key)) throw new ValidationError([{ field: 'Idempotency-Key', message: 'must be 1–255 printable ASCII characters' }]);
    const auth = authOf(req);
    const scope = { workspaceId: auth.workspaceId, caller: actorOf(auth), route, key };
    const requestHash = requestHashOf(req.method, new URL(req.originalUrl, 'http://local').pathname, req.body);
    const resume = options?.resume;
    // With `resume`, a lease proves this request alive until it links its send (a retry may take over a key whose lease ran out).
    const held = await service.hold(scope, requestHash, {
      resume: resume && ((messageId) => resume(req, messageId)),
      onLeaseError: (error: unknown) => req.log.warn({ err: error }, 'idempotency lease not renewed'),
    });
    if (held.kind === 'replay') {
      res.setHeader('Idempotent-Replayed', 'true');
      res.status(held.status).json(held.body);
      return;
    }
    res.locals.idempotencyClaim = held.claim;
    const send = res.json.bind(res);
    res.json = (body: unknown) => {
      held
        .finish(res.statusCode, body)
        .catch((error: unknown) => req.log.error({ err: error }, 'idempotency record not written'))
        .finally(() => send(body));
      return res;
    };
    next();
  };
}
