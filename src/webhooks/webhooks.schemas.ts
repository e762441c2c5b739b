import { z } from 'zod';
import { pageCursorField } from '../http/cursor.js';
import { webhookEventTypeSchema } from './events.js';
import { ATTEMPT_OUTCOMES } from './sender.js';

/*
 * Request and response bodies of /api/webhooks, exported for the OpenAPI document (the
 * event payloads are in events.ts). Requests are parsed with these; responses follow them.
 */

export const webhookUrlField = z
  .string()
  .trim()
  .max(2000)
  .pipe(z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }))
  // Runs even when the URL check above failed (zod reports every issue): parse defensively.
  .refine((value) => {
    const url = URL.parse(value);
    return !url || (url.username === '' && url.password === '');
  }, 'must not carry a user name or password');

const eventTypesField = z.array(webhookEventTypeSchema).min(1).max(20);
const descriptionField = z.string().trim().max(500).nullable();

export const createWebhookBody = z
  .object({
    url: webhookUrlField,
    eventTypes: eventTypesField,
    description: descriptionField.optional(),
    enabled: z.boolean().optional(),
  })
  .strict();

export const updateWebhookBody = z
  .object({
    url: webhookUrlField.optional(),
    eventTypes: eventTypesField.optional(),
    description: descriptionField.optional(),
    enabled: z.boolean().optional(),
  })
  .strict()
  .refine((body) => Object.keys(body).length > 0, 'name at least one field to change');

export const webhookDeliveriesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: pageCursorField.optional(),
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
});

const instant = z.iso.datetime();

export const webhookEndpointResponse = z.object({
  id: z.uuid(),
  url: z.string(),
  description: z.string().nullable(),
  eventTypes: z.array(webhookEventTypeSchema),
  enabled: z.boolean(),
  /** `disabled_after_failures`: turned off by the worker after sustained failure (the notice); PATCH `enabled: true` to resume. */
  status: z.enum(['healthy', 'failing', 'disabled_after_failures']),
  consecutiveFailures: z.number().int(),
  failingSince: instant.nullable(),
  lastSuccessAt: instant.nullable(),
  disabledAt: instant.nullable(),
  /** The member who answers for where it sends (set its URL or last sent `enabled: true` for it); their leaving turns it off. Null once their account is gone. */
  vouchedBy: z.uuid().nullable(),
  previousSecretExpiresAt: instant.nullable(),
  /**
   * True when deliveries require https (production) and this endpoint's URL is http:// (saved
   * before that rule): nothing is sent to it — each attempt is logged `https_required` — until its
   * URL is changed to https.
   */
  needsHttpsUrl: z.boolean(),
  createdAt: instant,
});

/** Creation and rotation only: the secret is never shown again. */
export const webhookEndpointWithSecretResponse = webhookEndpointResponse.extend({ secret: z.string() });

export const webhookEndpointListResponse = z.object({ endpoints: z.array(webhookEndpointResponse) });

export const webhookDeliveryLogResponse = z.object({
  deliveries: z.array(
    z.object({
      id: z.uuid(),
      eventId: z.uuid(),
      eventType: webhookEventTypeSchema,
      occurredAt: instant,
      status: z.enum(['pending', 'delivered', 'failed']),
      manual: z.boolean(),
      attempts: z.number().int(),
      nextAttemptAt: instant.nullable(),
      deliveredAt: instant.nullable(),
      lastResponseStatus: z.number().int().nullable(),
      lastError: z.string().nullable(),
      createdAt: instant,
      log: z.array(
        z.object({
          attempt: z.number().int(),
          outcome: z.enum(ATTEMPT_OUTCOMES),
          responseStatus: z.number().int().nullable(),
          latencyMs: z.number().int(),
          at: instant,
        }),
      ),
    }),
  ),
  nextCursor: z.string().nullable(),
});

export const webhookRedeliveryResponse = z.object({
  id: z.uuid(),
  eventId: z.uuid(),
  status: z.literal('pending'),
  manual: z.literal(true),
  nextAttemptAt: instant,
});
