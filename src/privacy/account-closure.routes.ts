import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { clientAddress } from '../auth/auth.routes.js';
import { parseInput } from '../http/validate.js';
import type { AccountClosureService } from './account-closure.service.js';

export const closeBody = z.object({ password: z.string().min(1).max(1000) }).strict();

/**
 * `POST /api/privacy/delete-account {password}` → 200 `{status:"closed", purgeAfter, closedWorkspaceIds}`;
 * 403 `password_incorrect`; 429 `too_many_requests` (Retry-After) past the login throttle's limits.
 */
export function accountClosureRoutes(closure: AccountClosureService, authenticated: RequestHandler): Router {
  const router = Router();
  router.post('/privacy/delete-account', authenticated, async (req, res) => {
    res.json(await closure.closeOwnAccount(authOf(req), parseInput(closeBody, req.body), clientAddress(req)));
  });
  return router;
}
