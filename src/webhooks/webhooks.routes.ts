import { Router, type RequestHandler } from 'express';
import { authOf, requireRole } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { createWebhookBody, updateWebhookBody, webhookDeliveriesQuery } from './webhooks.schemas.js';
import type { WebhooksService } from './webhooks.service.js';

/** /api/webhooks: owners and admins manage the workspace's endpoints and read their delivery log. */
export function webhooksRoutes(webhooks: WebhooksService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/webhooks', authenticated, requireRole('owner', 'admin'));
  const endpointId = (value: string | string[] | undefined) => parseId(value, 'Webhook endpoint');

  router.post('/webhooks', async (req, res) => {
    res.status(201).json(await webhooks.create(authOf(req), parseInput(createWebhookBody, req.body)));
  });
  router.get('/webhooks', async (req, res) => {
    res.json(await webhooks.list(authOf(req)));
  });
  router.get('/webhooks/:id', async (req, res) => {
    res.json(await webhooks.get(authOf(req), endpointId(req.params.id)));
  });
  router.patch('/webhooks/:id', async (req, res) => {
    const id = endpointId(req.params.id);
    res.json(await webhooks.update(authOf(req), id, parseInput(updateWebhookBody, req.body)));
  });
  router.delete('/webhooks/:id', async (req, res) => {
    await webhooks.remove(authOf(req), endpointId(req.params.id));
    res.status(204).end();
  });
  router.post('/webhooks/:id/rotate-secret', async (req, res) => {
    res.json(await webhooks.rotateSecret(authOf(req), endpointId(req.params.id)));
  });
  router.get('/webhooks/:id/deliveries', async (req, res) => {
    const id = endpointId(req.params.id);
    res.json(await webhooks.deliveries(authOf(req), id, parseInput(webhookDeliveriesQuery, req.query, '(query)')));
  });
  router.post('/webhooks/:id/events/:eventId/redeliver', async (req, res) => {
    const id = endpointId(req.params.id);
    const eventId = parseId(req.params.eventId, 'Event');
    res.status(202).json(await webhooks.redeliver(authOf(req), id, eventId));
  });
  return router;
}
