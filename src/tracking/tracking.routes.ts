import { Router, type RequestHandler } from 'express';
import { authOf } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import { streamCsvDownload } from '../http/csv-download.js';
import { resultsCsv } from './results-csv.js';
import type { ResultsService } from './results.service.js';
import type { StatsService } from './stats.service.js';

/**
 * CRM routes of the tracking feature. (The public /t/ URLs are not here: they are served
 * before Express, see tracking-handler.ts.) Guarded per route, because /campaigns is
 * the campaigns router's prefix.
 */
export function trackingRoutes(stats: StatsService, authenticated: RequestHandler, results: ResultsService): Router {
  const router = Router();
  router.get('/campaigns/:id/stats', authenticated, async (req, res) => {
    res.json(await stats.campaignStats(authOf(req), parseId(req.params.id, 'Campaign')));
  });
  /** Per-recipient results, streamed (see results-csv.ts for the spreadsheet-formula guard). */
  router.get('/campaigns/:id/results.csv', authenticated, async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    const pages = await results.recipientResults(authOf(req), id);
    await streamCsvDownload(res, `campaign-${id}-results.csv`, resultsCsv(pages));
  });
  return router;
}
