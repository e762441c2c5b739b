import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { API_SCOPES } from '../http/api-spec.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import type { ApiKeysService } from './api-keys.service.js';

export const createApiKeyBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    scopes: z.array(z.enum(API_SCOPES)).min(1).max(API_SCOPES.length),
  })
  .strict();

export function apiKeysRoutes(apiKeys: ApiKeysService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/api-keys', authenticated);
  router.post('/api-keys', async (req, res) => {
    res.status(201).json(await apiKeys.create(authOf(req), parseInput(createApiKeyBody, req.body)));
  });
  router.get('/api-keys', async (req, res) => {
    res.json({ apiKeys: await apiKeys.list(authOf(req)) });
  });
  router.delete('/api-keys/:id', async (req, res) => {
    await apiKeys.revoke(authOf(req), parseId(req.params.id, 'API key'));
    res.status(204).end();
  });
  return router;
}
