import { Router, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { authOf, requireRole } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import { isoInstant, parseInput, entityId } from '../http/validate.js';
import { DATA_KINDS, type ExportService } from './export.service.js';
import { writeJsonDocument, type ExportSection } from './json-stream.js';
import type { LegalRequestsService } from './legal-requests.service.js';

const email = z.string().trim().toLowerCase().pipe(z.email().max(254));
export const recipientQuery = z.object({ email });

const text = (max: number) => z.string().trim().min(1).max(max);
export const legalRequestBody = z
  .object({
    authority: text(200),
    legalBasis: text(500),
    reference: text(200),
    scope: z
      .object({
        contactIds: z.array(entityId).max(1000).default([]),
        addresses: z.array(email).max(1000).default([]),
        mailboxIds: z.array(entityId).max(100).default([]),
        from: isoInstant,
        to: isoInstant,
        kinds: z.array(z.enum(DATA_KINDS)).min(1).max(DATA_KINDS.length),
      })
      .strict()
      .refine((s) => s.contactIds.length + s.addresses.length + s.mailboxIds.length > 0, {
        message: 'name at least one contact id, address or mailbox id',
        path: ['contactIds'],
      })
      .refine((s) => s.from < s.to, { message: 'must be after from', path: ['to'] }),
  })
  .strict();

/**
 * Streams the document: headers first, then the sections as they are read. A failure
 * after the first byte cannot become an error reply any more, so the connection is cut:
 * the client gets a truncated (invalid) document, never one that looks complete.
 */
export async function streamJson(res: Response, filename: string, sections: ExportSection[]): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Disposition', `attachment; filename="${filename}"`);
  res.setHeader('Cache-Control', 'no-store');
  try {
    await writeJsonDocument(res, sections);
    res.end();
  } catch (error) {
    res.destroy(error as Error);
    throw error;
  }
}

export function privacyRoutes(exports: ExportService, legal: LegalRequestsService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/privacy', authenticated);
  const admins = requireRole('owner', 'admin');

  router.get('/privacy/export', async (req, res) => {
    await streamJson(res, 'inboxtrail-export.json', await exports.exportSelf(authOf(req)));
  });

  router.get('/privacy/recipients/export', admins, async (req, res) => {
    const { email: address } = parseInput(recipientQuery, req.query, '(query)');
    await streamJson(res, 'inboxtrail-recipient-export.json', await exports.exportRecipient(authOf(req), address));
  });

  router.post('/privacy/legal-requests', admins, async (req, res) => {
    res.status(201).json(await legal.record(authOf(req), parseInput(legalRequestBody, req.body)));
  });
  router.get('/privacy/legal-requests', admins, async (req, res) => {
    res.json({ legalRequests: await legal.list(authOf(req)) });
  });
  router.get('/privacy/legal-requests/:id', admins, async (req, res) => {
    res.json(await legal.get(authOf(req), parseId(req.params.id, 'Legal request')));
  });
  router.get('/privacy/legal-requests/:id/disclosure', admins, async (req, res) => {
    const id = parseId(req.params.id, 'Legal request');
    await streamJson(res, `inboxtrail-legal-disclosure-${id}.json`, await legal.disclose(authOf(req), id));
  });
  return router;
}
