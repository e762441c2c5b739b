import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { actorOf } from '../auth/actor.js';
import { authOf } from '../auth/auth.middleware.js';
import { ValidationError } from '../errors.js';
import type { IdempotencyService } from './idempotency.service.js';

/** Printable ASCII, as Stripe and the IETF draft use: a UUID or any opaque string the client makes. */
const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

export type IdempotentRoute = (route: string) => RequestHandler;

/**
 * `Idempotency-Key` for one route (named by its pattern, e.g. `POST /api/campaigns/:id/launch`).
 * Runs after requireAuth, so the key is scoped per workspace, caller and route. The answer is
 * caught at `res.json` — every reply of these routes, errors included, goes through it — and
 * stored (or the key freed) before it is sent, so a retry can never see a half-written entry.
 */
export function idempotentRoute(service: IdempotencyService): IdempotentRoute {
  return (route) => async (req, res, next) => {
    const key = req.header('idempotency-key');
    if (key === undefined) return next();
    if (!KEY_SHAPE.test(key)) throw new ValidationError([{ field: 'Idempotency-Key', message: 'must be 1–255 printable ASCII characters' }]);
    const auth = authOf(req);
    const scope = { workspaceId: auth.workspaceId, caller: actorOf(auth), route, key };
    // The concrete path counts: the same key on another campaign's launch is another request.
    const requestHash = createHash('sha256')
      .update(`${req.method} ${new URL(req.originalUrl, 'http://local').pathname}\n${JSON.stringify(req.body ?? null)}`)
      .digest('hex');
    const start = await service.begin(scope, requestHash);
    if (start.kind === 'replay') {
      res.setHeader('Idempotent-Replayed', 'true');
      res.status(start.status).json(start.body);
      return;
    }
    const send = res.json.bind(res);
    res.json = (body: unknown) => {
      service
        .finish(scope, res.statusCode, body)
        .catch((error: unknown) => req.log.error({ err: error }, 'idempotency record not written'))
        .finally(() => send(body));
      return res;
    };
    next();
  };
}
