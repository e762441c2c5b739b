import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf, requireRole } from '../auth/auth.middleware.js';
import { emailAddressField } from '../contacts/email-address.js';
import { suppressionReasonEnum } from '../db/schema.js';
import { parseId } from '../http/params.js';
import { pageCursorField } from '../http/cursor.js';
import { parseInput } from '../http/validate.js';
import type { SuppressionService } from './suppression.service.js';
import { TOPIC_NAME, TOPIC_RULE } from './topics.js';

/** `all`, or `topic:<name>` with a campaign topic's name (topics.ts), case-insensitively: `topic:News` is `topic:news`. */
const scopeField = z
  .string()
  .trim()
  .transform((scope) => scope.toLowerCase())
  .refine((scope) => scope === 'all' || (scope.startsWith('topic:') && TOPIC_NAME.test(scope.slice('topic:'.length))), {
    message: `must be all or topic:<name>, the name a campaign topic (${TOPIC_RULE})`,
  });

export const listSuppressionsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: pageCursorField.optional(),
  email: emailAddressField.optional(),
  reason: z.enum(suppressionReasonEnum.enumValues).optional(),
  scope: scopeField.optional(),
});
const note = z.string().trim().min(1).max(2000);
export const addSuppressionBody = z
  .object({
    email: emailAddressField,
    // unsubscribe comes only from the recipient, bounce only from the mailbox: neither is typed in by hand.
    reason: z.enum(['manual', 'complaint']).default('manual'),
    scope: scopeField.default('all'),
    note: note.optional(),
  })
  .strict();
export const removeSuppressionBody = z
  .object({
    note,
    /** Where the recipient's new consent came from; required to remove an unsubscribe or complaint entry. */
    consentSource: z.string().trim().min(1).max(200).optional(),
  })
  .strict();

export function suppressionRoutes(suppressions: SuppressionService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/suppressions', authenticated);

  router.get('/suppressions', async (req, res) => {
    res.json(await suppressions.list(authOf(req), parseInput(listSuppressionsQuery, req.query, '(query)')));
  });
  router.post('/suppressions', async (req, res) => {
    const { created, suppression } = await suppressions.add(authOf(req), parseInput(addSuppressionBody, req.body));
    res.status(created ? 201 : 200).json(suppression);
  });
  router.delete('/suppressions/:id', requireRole('owner', 'admin'), async (req, res) => {
    const id = parseId(req.params.id, 'Suppression');
    await suppressions.remove(authOf(req), id, parseInput(removeSuppressionBody, req.body ?? {}));
    res.status(204).end();
  });
  return router;
}
