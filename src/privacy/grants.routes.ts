import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import { isoInstant, parseInput, entityId } from '../http/validate.js';
import type { GrantsService } from './grants.service.js';

export const grantBody = z
  .object({
    messageId: entityId,
    granteeUserId: entityId,
    expiresAt: isoInstant,
    reason: z.string().trim().min(1).max(500).optional(),
  })
  .strict();
export const listGrantsQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }).strict();

/** Access grants to Gmail content: the mailbox owner grants and revokes; owner and grantee list. */
export function grantsRoutes(grants: GrantsService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/grants', authenticated);
  router.post('/grants', async (req, res) => {
    res.status(201).json(await grants.grant(authOf(req), parseInput(grantBody, req.body)));
  });
  router.get('/grants', async (req, res) => {
    res.json({ grants: await grants.list(authOf(req), parseInput(listGrantsQuery, req.query, '(query)').limit) });
  });
  router.delete('/grants/:id', async (req, res) => {
    await grants.revoke(authOf(req), parseId(req.params.id, 'Grant'));
    res.status(204).end();
  });
  return router;
}
