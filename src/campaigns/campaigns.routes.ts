import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { assertCsvUpload } from '../contacts/contacts.routes.js';
import { pageCursorField } from '../http/cursor.js';
import { parseId } from '../http/params.js';
import { isoInstant, parseInput, entityId } from '../http/validate.js';
import type { IdempotentRoute } from '../idempotency/idempotency.middleware.js';
import type { CampaignsService } from './campaigns.service.js';
import { segmentSchema } from './segment.js';
import { isValidTimeZone } from './sending-window.js';
import { TOPIC_NAME, TOPIC_RULE } from '../suppression/topics.js';

const headerText = z.string().min(1).max(998).refine((v) => !/[\r\n]/.test(v), 'must not contain line breaks');
const body = z.string().max(2 * 1024 * 1024);

const step = z
  .object({ afterDays: z.number().int().min(0).max(365), subject: headerText.optional(), html: body.optional(), text: body.optional() })
  .strict()
  .refine((s) => s.html !== undefined || s.text !== undefined, 'a step needs html or text');

const sendingWindow = z
  .object({
    days: z.array(z.number().int().min(1).max(7)).min(1).max(7),
    startHour: z.number().int().min(0).max(23),
    endHour: z.number().int().min(1).max(24),
    timeZone: z.string().refine(isValidTimeZone, 'is not a time zone (use an IANA name such as Europe/Paris)'),
  })
  .strict()
  .refine((w) => w.endHour > w.startHour, { message: 'must end after it starts', path: ['endHour'] });

export const campaignBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    kind: z.enum(['marketing', 'transactional']),
    mailboxId: entityId,
    subject: headerText,
    html: body.optional(),
    text: body.optional(),
    topic: z.string().trim().regex(TOPIC_NAME, TOPIC_RULE).optional(),
    contactIds: z.array(entityId).min(1).max(100_000).optional(),
    segment: segmentSchema.optional(),
    steps: z.array(step).max(10).default([]),
    startAt: isoInstant.optional(),
    sendingWindow: sendingWindow.optional(),
  })
  .strict()
  .refine((c) => c.html !== undefined || c.text !== undefined, { message: 'give html, text or both', path: ['html'] })
  .refine((c) => (c.contactIds === undefined) !== (c.segment === undefined), { message: 'give exactly one of contactIds or segment', path: ['contactIds'] })
  .transform(({ contactIds, segment, ...rest }) => ({ ...rest, audience: contactIds ? { contactIds } : { segment: segment! } }));

export const listCampaignsQuery = z.object({
  // 200 by default: what the list gave before it paged, so a client that reads one page sees the same.
  limit: z.coerce.number().int().min(1).max(500).default(200),
  cursor: pageCursorField.optional(),
});

export const launchBody = z.object({ startAt: isoInstant.optional() }).strict();

export function campaignsRoutes(campaigns: CampaignsService, authenticated: RequestHandler, idempotent: IdempotentRoute): Router {
  const router = Router();
  router.use('/campaigns', authenticated);
  router.post('/campaigns', idempotent('POST /api/campaigns'), async (req, res) => {
    res.status(201).json(await campaigns.create(authOf(req), parseInput(campaignBody, req.body)));
  });
  router.get('/campaigns', async (req, res) => {
    res.json(await campaigns.list(authOf(req), parseInput(listCampaignsQuery, req.query, '(query)')));
  });
  router.delete('/campaigns/:id', async (req, res) => {
    await campaigns.remove(authOf(req), parseId(req.params.id, 'Campaign'));
    res.status(204).end();
  });
  router.get('/campaigns/:id', async (req, res) => {
    res.json(await campaigns.get(authOf(req), parseId(req.params.id, 'Campaign')));
  });
  router.patch('/campaigns/:id', async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    res.json(await campaigns.update(authOf(req), id, parseInput(campaignBody, req.body)));
  });
  router.post('/campaigns/:id/recipients', async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    assertCsvUpload(req);
    res.json(await campaigns.importRecipients(authOf(req), id, req));
  });
  router.post('/campaigns/:id/preflight', async (req, res) => {
    res.json(await campaigns.preflight(authOf(req), parseId(req.params.id, 'Campaign')));
  });
  router.post('/campaigns/:id/launch', idempotent('POST /api/campaigns/:id/launch'), async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    res.json(await campaigns.launch(authOf(req), id, parseInput(launchBody, req.body ?? {})));
  });
  for (const action of ['pause', 'resume', 'cancel'] as const) {
    router.post(`/campaigns/:id/${action}`, async (req, res) => {
      res.json(await campaigns[action](authOf(req), parseId(req.params.id, 'Campaign')));
    });
  }
  return router;
}
