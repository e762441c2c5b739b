import { Router } from 'express';
import type { PushService } from './push.service.js';

/**
 * POST /webhooks/gmail — Gmail push through Pub/Sub. Authenticated by the Pub/Sub OIDC
 * token, not by a session. Known or unknown mailbox, a verified notification gets 204:
 * Pub/Sub retries every non-2xx, and an unknown address will never become known by retrying.
 */
export function pushRoutes(push: PushService): Router {
  const router = Router();
  router.post('/gmail', async (req, res) => {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    // The token first: an unauthenticated caller learns nothing, not even whether its body parses.
    await push.authenticate(match?.[1]);
    await push.notify(req.body);
    res.status(204).end();
  });
  return router;
}
