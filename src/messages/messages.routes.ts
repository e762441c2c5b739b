import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { emailAddressField } from '../contacts/email-address.js';
import type { MessageContentReader } from '../gmail/message-content.js';
import { parseId } from '../http/params.js';
import { parseInput, entityId } from '../http/validate.js';
import { idempotencyClaimOf, type IdempotentRoute } from '../idempotency/idempotency.middleware.js';
import { CONTENT_PURPOSES } from '../privacy/gmail-guard.js';
import type { MessagesService } from './messages.service.js';

export const MAX_RECIPIENTS = 100;

const addressList = z.union([emailAddressField, z.array(emailAddressField).max(MAX_RECIPIENTS)]).transform((v) => (Array.isArray(v) ? v : [v]));
/** A header value never spans lines: CR or LF would let a caller write headers of their own. */
const headerText = z.string().max(998).refine((v) => !/[\r\n]/.test(v), 'must not contain line breaks');

export const sendMessageBody = z
  .object({
    mailboxId: entityId,
    to: addressList,
    cc: addressList.optional(),
    bcc: addressList.optional(),
    subject: headerText,
    text: z.string().optional(),
    html: z.string().optional(),
    inReplyTo: entityId.optional(),
  })
  .strict()
  .refine((m) => m.text !== undefined || m.html !== undefined, { message: 'give text, html or both', path: ['text'] })
  .refine((m) => m.to.length > 0, { message: 'at least one recipient', path: ['to'] })
  .refine((m) => m.to.length + (m.cc?.length ?? 0) + (m.bcc?.length ?? 0) <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to, cc and bcc together`,
    path: ['to'],
  })
  .transform((m) => ({ ...m, cc: m.cc ?? [], bcc: m.bcc ?? [] }));

/** A non-owner states the basis of their read (the owner needs none); `service_operation` is the service's own and never a caller's. */
export const contentQuery = z
  .object({
    basis: z.enum(['owner', 'grant', 'security', 'legal', 'aggregate']).optional(),
    purpose: z.enum(CONTENT_PURPOSES).optional(),
    caseReference: z.string().trim().min(1).max(200).optional(),
  })
  .strict();

export function messagesRoutes(messages: MessagesService, content: MessageContentReader, authenticated: RequestHandler, idempotent: IdempotentRoute): Router {
  const router = Router();
  router.use('/messages', authenticated);
  // A retry of a request that crashed after claiming its send answers that message's state (idempotency/README.md).
  const resume = (req: Parameters<RequestHandler>[0], messageId: string) => messages.answerOfClaim(authOf(req), messageId);
  router.post('/messages', idempotent('POST /api/messages', { resume }), async (req, res) => {
    const { pending, message } = await messages.send(authOf(req), parseInput(sendMessageBody, req.body), { idempotencyKey: idempotencyClaimOf(res) });
    // 202: the outcome is not known yet (Gmail did not confirm in time, or recording its answer failed); GET /api/messages/:id shows it once it is.
    res.status(pending ? 202 : 201).json(message);
  });
  router.get('/messages/:id', async (req, res) => {
    res.json(await messages.get(authOf(req), parseId(req.params.id, 'Message')));
  });
  /** The body, fetched from Gmail through the privacy guard (owner, or a stated basis); never stored and never cached. */
  router.get('/messages/:id/content', async (req, res) => {
    const id = parseId(req.params.id, 'Message');
    const message = await content.readMessageContent(authOf(req), id, parseInput(contentQuery, req.query, '(query)'));
    res.setHeader('Cache-Control', 'no-store');
    res.json(message);
  });
  return router;
}
