import { Router, type RequestHandler } from 'express';
import { authOf } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import type { StatsService } from './stats.service.js';

/**
 * CRM routes of the tracking feature. (The public /t/ URLs are not here: they are served
 * before Express, see tracking-handler.ts.) Guarded per route, because /campaigns is
 * the campaigns router's prefix.
 */
export function trackingRoutes(stats: StatsService, authenticated: RequestHandler): Router {
  const router = Router();
  router.get('/campaigns/:id/stats', authenticated, async (req, res) => {
    res.json(await stats.campaignStats(authOf(req), parseId(req.params.id, 'Campaign')));
  });
  return router;
}
