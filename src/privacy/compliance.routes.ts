import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { authOf, requireRole } from '../auth/auth.middleware.js';
import type { AuthContext } from '../auth/auth.service.js';
import { isoInstant, parseInput } from '../http/validate.js';
import type { ComplianceService, ReportRange } from './compliance.service.js';

export const reportQuery = z
  .object({
    from: isoInstant.optional(),
    to: isoInstant.optional(),
    format: z.enum(['json', 'csv']).optional(),
  })
  .strict();

const wantsCsv = (req: Request, format?: 'json' | 'csv') => format === 'csv' || (format === undefined && req.accepts(['application/json', 'text/csv']) === 'text/csv');

/** Streams the report as a CSV attachment (also the web app's download). */
export async function sendReportCsv(res: Response, compliance: ComplianceService, auth: AuthContext, range: ReportRange): Promise<void> {
  const lines = compliance.reportCsv(auth, range);
  // The first line is produced before the headers go out, so a refusal is still an error reply (JSON or page).
  const first = await lines.next();
  const day = (d: Date) => d.toISOString().slice(0, 10);
  res.type('text/csv; charset=utf-8');
  res.setHeader('Content-Disposition', `attachment; filename="compliance-report-${day(range.from)}-${day(range.to)}.csv"`);
  async function* all() {
    if (!first.done) yield first.value;
    yield* lines;
  }
  // A failure midway ends the download early (the headers are gone); pipeline destroys the response.
  await pipeline(Readable.from(all()), res);
}

/** GET /api/compliance/report: owners and admins; JSON, or CSV (`format=csv` or `Accept: text/csv`) streamed. */
export function complianceRoutes(compliance: ComplianceService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/compliance', authenticated);
  router.get('/compliance/report', requireRole('owner', 'admin'), async (req, res) => {
    const query = parseInput(reportQuery, req.query, '(query)');
    const range = compliance.rangeOf(query);
    const auth = authOf(req);
    res.setHeader('Cache-Control', 'no-store');
    if (!wantsCsv(req, query.format)) {
      res.json(await compliance.reportJson(auth, range));
      return;
    }
    await sendReportCsv(res, compliance, auth, range);
  });
  return router;
}
