import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import type { SandboxControl } from './control.js';
import { SANDBOX_ENDPOINTS, type FaultRule } from './faults.js';
import { MailStoreError } from './store.js';

/**
 * `/__control/…`: the control object over HTTP, for tests in another process and for
 * people with curl. JSON in and out; errors are `{error:{code,message}}` like the service's.
 */

class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const kind = z.enum(['workspace', 'consumer']);
const addressList = z.union([z.string(), z.array(z.string())]);

const mailboxBody = z.object({ email: z.string().min(3), kind: kind.optional(), displayName: z.string().optional() });

const mailFields = z.object({
  from: z.string().optional(),
  to: addressList.optional(),
  cc: addressList.optional(),
  bcc: addressList.optional(),
  subject: z.string().optional(),
  text: z.string().optional(),
  html: z.string().optional(),
  inReplyTo: z.string().optional(),
  references: addressList.optional(),
  messageId: z.string().optional(),
  date: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
});
/** `raw` is the RFC 822 text; `rawBase64url` carries bytes that are not UTF-8. */
const mailInput = z.union([
  z.object({ raw: z.string().min(1) }),
  z.object({ rawBase64url: z.string().min(1) }).transform((v) => ({ raw: Buffer.from(v.rawBase64url, 'base64url') })),
  mailFields,
]);

const bounceBody = z.object({
  originalId: z.string().optional(),
  originalMessageId: z.string().optional(),
  recipient: z.string().optional(),
  kind: z.enum(['hard', 'soft', 'delay']).optional(),
  form: z.enum(['report', 'text']).optional(),
  status: z.string().regex(/^[245]\.\d{1,3}\.\d{1,3}$/).optional(),
  diagnostic: z.string().optional(),
  includeOriginal: z.enum(['headers', 'full', 'none']).optional(),
});

const times = z.union([z.number().int().min(1), z.literal('always')]).optional();
const target = {
  endpoint: z.enum(['*', ...SANDBOX_ENDPOINTS]).optional(),
  mailbox: z.string().optional(),
  times,
};
const faultBody = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('rateLimit'), retryAfterSeconds: z.number().int().min(0).optional(), ...target }),
  z.object({ kind: z.literal('userRateLimit'), retryAfterSeconds: z.number().int().min(0).optional(), ...target }),
  z.object({ kind: z.literal('backendError'), status: z.union([z.literal(500), z.literal(503)]).optional(), ...target }),
  z.object({
    kind: z.literal('googleError'),
    status: z.number().int().min(400).max(599),
    reason: z.string().min(1),
    message: z.string().optional(),
    domain: z.string().optional(),
    retryAfterSeconds: z.number().int().min(0).optional(),
    ...target,
  }),
  z.object({ kind: z.literal('latency'), ms: z.number().min(0).max(120_000), ...target }),
  z.object({ kind: z.literal('invalidGrant'), ...target }),
]);

const pushTokenBody = z.object({
  audience: z.string().min(1),
  email: z.string().min(1),
  issuer: z.string().optional(),
  expiresInSeconds: z.number().int().optional(),
});

const subscriptionBody = z.object({
  topicName: z.string(),
  endpoint: z.url(),
  audience: z.string().optional(),
  serviceAccountEmail: z.string().optional(),
  name: z.string().optional(),
});

function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const summary = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(body)'}: ${i.message}`).join('; ');
  throw new ControlError(400, 'validation_failed', summary);
}

function param(req: Request, name: string): string {
  return String(req.params[name] ?? '');
}

export function controlRoutes(control: SandboxControl): Router {
  const router = express.Router();
  router.use(express.json({ limit: '50mb' }));

  const mailbox = (req: Request) => {
    const email = param(req, 'email');
    if (!control.getMailbox(email)) throw new ControlError(404, 'mailbox_not_found', `no sandbox mailbox ${email}`);
    return email;
  };

  router.get('/mailboxes', (_req, res) => {
    res.json({ mailboxes: control.listMailboxes() });
  });
  router.post('/mailboxes', (req, res) => {
    res.status(201).json(control.createMailbox(parse(mailboxBody, req.body)));
  });
  router.get('/mailboxes/:email', (req, res) => {
    res.json(control.getMailbox(mailbox(req)));
  });
  router.get('/mailboxes/:email/messages', (req, res) => {
    const labelId = typeof req.query['labelId'] === 'string' ? req.query['labelId'] : undefined;
    res.json({ messages: control.listMessages(mailbox(req), { labelId }) });
  });
  router.get('/mailboxes/:email/messages/:id', (req, res) => {
    res.json(control.getMessage(mailbox(req), param(req, 'id')));
  });
  router.post('/mailboxes/:email/messages/:id/labels', (req, res) => {
    const body = parse(z.object({ add: z.array(z.string()).optional(), remove: z.array(z.string()).optional() }), req.body);
    res.json(control.modifyLabels(mailbox(req), param(req, 'id'), body));
  });
  router.put('/mailboxes/:email/messages/:id/internal-date', (req, res) => {
    const body = parse(z.object({ at: z.string().datetime() }), req.body);
    res.json(control.setInternalDate(mailbox(req), param(req, 'id'), new Date(body.at)));
  });
  router.post('/mailboxes/:email/messages/:id/reply', async (req, res) => {
    const body = parse(z.object({ text: z.string(), html: z.string().optional() }), req.body);
    res.status(201).json(await control.reply(mailbox(req), param(req, 'id'), body));
  });
  router.post('/mailboxes/:email/inbound', async (req, res) => {
    res.status(201).json(await control.deliverInbound(mailbox(req), parse(mailInput, req.body)));
  });
  router.post('/mailboxes/:email/send', async (req, res) => {
    const threadId = parse(z.object({ threadId: z.string().optional() }).loose(), req.body).threadId;
    res.status(201).json(await control.sendAs(mailbox(req), { ...parse(mailInput, req.body), threadId }));
  });
  router.post('/mailboxes/:email/bounces', async (req, res) => {
    res.status(201).json(await control.deliverBounce(mailbox(req), parse(bounceBody, req.body)));
  });
  router.post('/mailboxes/:email/history/truncate', (req, res) => {
    res.json({ oldestHistoryId: control.truncateHistory(mailbox(req)) });
  });
  router.put('/mailboxes/:email/search-index-lag', (req, res) => {
    control.setSearchIndexLag(mailbox(req), parse(z.object({ ms: z.number().int().min(0) }), req.body).ms);
    res.status(204).end();
  });
  router.post('/mailboxes/:email/revoke', (req, res) => {
    res.json({ revokedGrants: control.revokeAccess(mailbox(req)) });
  });
  router.get('/mailboxes/:email/push-body', (req, res) => {
    const historyId = typeof req.query['historyId'] === 'string' ? req.query['historyId'] : undefined;
    const subscription = typeof req.query['subscription'] === 'string' ? req.query['subscription'] : undefined;
    res.json(control.pushNotificationBody(mailbox(req), { historyId, subscription }));
  });

  router.put('/bouncing-addresses/:address', (req, res) => {
    const body = parse(z.object({ kind: z.enum(['hard', 'soft', 'delay']).default('hard'), status: z.string().optional(), form: z.enum(['report', 'text']).optional() }), req.body);
    control.setBouncingAddress(param(req, 'address'), body.kind, body.status, body.form);
    res.status(204).end();
  });
  router.delete('/bouncing-addresses/:address', (req, res) => {
    control.setBouncingAddress(param(req, 'address'), null);
    res.status(204).end();
  });

  router.get('/faults', (_req, res) => {
    res.json({ faults: control.listFaults() });
  });
  router.post('/faults', (req, res) => {
    res.status(201).json(control.injectFault(parse(faultBody, req.body) as FaultRule));
  });
  router.delete('/faults', (_req, res) => {
    control.clearFaults();
    res.status(204).end();
  });
  router.delete('/faults/:id', (req, res) => {
    if (!control.removeFault(param(req, 'id'))) throw new ControlError(404, 'fault_not_found', 'no such fault');
    res.status(204).end();
  });

  router.post('/tokens/expire', (req, res) => {
    const body = parse(z.object({ email: z.string().optional() }), req.body);
    res.json({ expired: control.expireAccessTokens(body.email) });
  });
  router.post('/authorizations', (req, res) => {
    control.queueAuthorization(parse(z.object({ decision: z.enum(['allow', 'deny']), email: z.string().optional(), kind: kind.optional() }), req.body));
    res.status(202).json({ queued: true });
  });

  router.get('/calls', (req, res) => {
    const mailboxFilter = typeof req.query['mailbox'] === 'string' ? req.query['mailbox'] : undefined;
    const successfulOnly = req.query['successfulOnly'] === 'true';
    res.json({ counts: control.callCounts({ mailbox: mailboxFilter, successfulOnly }), calls: control.calls({ mailbox: mailboxFilter, successfulOnly }) });
  });

  router.post('/push/token', (req, res) => {
    res.json({ token: control.signPushToken(parse(pushTokenBody, req.body)) });
  });
  router.get('/push/subscriptions', (_req, res) => {
    res.json({ subscriptions: control.listPushSubscriptions() });
  });
  router.post('/push/subscriptions', (req, res) => {
    res.status(201).json(control.addPushSubscription(parse(subscriptionBody, req.body)));
  });
  router.get('/push/deliveries', async (_req, res) => {
    await control.flushPushes();
    res.json({ deliveries: control.pushDeliveries() });
  });

  router.post('/reset', (_req, res) => {
    control.reset();
    res.status(204).end();
  });

  router.use((req, res) => {
    res.status(404).json({ error: { code: 'route_not_found', message: `Route ${req.method} ${req.baseUrl}${req.path} not found` } });
  });

  router.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof ControlError) return res.status(error.status).json({ error: { code: error.code, message: error.message } });
    if (error instanceof MailStoreError) {
      return res.status(error.code === 'not_found' ? 404 : 400).json({ error: { code: error.code, message: error.message } });
    }
    if (error instanceof TypeError || error instanceof RangeError) {
      return res.status(400).json({ error: { code: 'invalid_request', message: error.message } });
    }
    const status = (error as { status?: number } | null)?.status;
    if (status && status >= 400 && status < 500) return res.status(status).json({ error: { code: 'bad_request', message: 'The request body could not be read' } });
    console.error('gmail sandbox control: unexpected error', error);
    res.status(500).json({ error: { code: 'internal_error', message: 'sandbox control failed' } });
  });

  return router;
}
