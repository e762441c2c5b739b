import { z } from 'zod';

/*
 * The event catalogue: every event a workspace can subscribe to, and the shape of its
 * `data`. Payloads carry ids, the workspace's own contacts' addresses and verdicts only —
 * never a mail body, a subject or anything else read from Gmail (P-02, P-03).
 */

export const WEBHOOK_EVENT_TYPES = [
  'message.sent',
  'message.failed',
  'open',
  'click',
  'reply',
  'bounce',
  'unsubscribe',
  'suppression.added',
  'suppression.removed',
  'consent.changed',
  'campaign.status_changed',
  'mailbox.needs_reconnect',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
export const webhookEventTypeSchema = z.enum(WEBHOOK_EVENT_TYPES);

const id = z.uuid();
const email = z.string();

export const messageEventData = z.object({
  messageId: id,
  /** Set for a campaign mail; absent for 1:1 mail. */
  campaignId: id.optional(),
  sendId: id.optional(),
  step: z.number().int().optional(),
  mailboxId: id.optional(),
  contactId: id.nullable().optional(),
  email: email.optional(),
  errorCode: z.string().optional(),
});

export const trackingEventData = z.object({
  trackingEventId: id,
  campaignId: id,
  sendId: id,
  contactId: id.nullable(),
  email,
  verdict: z.enum(['human', 'machine', 'unknown']),
  reasons: z.array(z.string()),
  /** click only: which of the campaign's links (its index in the campaign). */
  linkIndex: z.number().int().nullable().optional(),
});

export const replyEventData = z.object({
  messageId: id,
  campaignId: id.nullable(),
  contactId: id.nullable(),
  email: email.nullable(),
  automatic: z.boolean(),
});

export const bounceEventData = z.object({
  messageId: id,
  campaignId: id.nullable(),
  contactId: id.nullable(),
  email: email.nullable(),
  kind: z.enum(['hard', 'soft', 'delay']),
});

export const suppressionEventData = z.object({
  suppressionId: id,
  /** Null when the entry belonged to a purged contact and survives only as a keyed hash (P-13). */
  email: email.nullable(),
  scope: z.string(),
  reason: z.string(),
  campaignId: id.optional(),
});

export const consentEventData = z.object({
  contactId: id,
  email,
  status: z.enum(['opted_in', 'opted_out']),
  source: z.string(),
});

export const campaignStatusEventData = z.object({
  campaignId: id,
  from: z.string(),
  to: z.string(),
});

export const mailboxReconnectEventData = z.object({
  mailboxId: id,
  email,
});

/** `data` of each event type (the OpenAPI document lists these as webhook payloads). */
export const webhookEventDataSchemas = {
  'message.sent': messageEventData,
  'message.failed': messageEventData,
  open: trackingEventData,
  click: trackingEventData,
  reply: replyEventData,
  bounce: bounceEventData,
  unsubscribe: suppressionEventData,
  'suppression.added': suppressionEventData,
  'suppression.removed': suppressionEventData,
  'consent.changed': consentEventData,
  'campaign.status_changed': campaignStatusEventData,
  'mailbox.needs_reconnect': mailboxReconnectEventData,
} satisfies Record<WebhookEventType, z.ZodType>;

/** The body of every delivery: the same bytes on every attempt of one event. */
export const webhookEventBodySchema = z.object({
  /** Stable across retries and redeliveries: receivers deduplicate on it. */
  id,
  type: webhookEventTypeSchema,
  occurredAt: z.iso.datetime(),
  workspaceId: id,
  data: z.record(z.string(), z.unknown()),
});
export type WebhookEventBody = z.infer<typeof webhookEventBodySchema>;

/** One event to put in the outbox, in the transaction of its fact. */
export interface WebhookEventInput<T extends WebhookEventType = WebhookEventType> {
  workspaceId: string;
  type: T;
  occurredAt: Date;
  data: z.input<(typeof webhookEventDataSchemas)[T]>;
}

const SUMMARIES: Record<WebhookEventType, string> = {
  'message.sent': 'Gmail accepted a campaign mail or a 1:1 mail',
  'message.failed': 'A send failed for good',
  open: 'An open was recorded (verdict human/machine/unknown with reasons)',
  click: 'A click was recorded (verdict human/machine/unknown with reasons)',
  reply: 'A reply to our mail was found (automatic or from a person)',
  bounce: 'A bounce or delay notice was found (hard/soft/delay)',
  unsubscribe: 'The recipient opted out',
  'suppression.added': 'An address was added to the suppression list',
  'suppression.removed': 'An address was removed from the suppression list',
  'consent.changed': "A consent record was appended to a contact's history",
  'campaign.status_changed': 'A campaign moved from one status to another',
  'mailbox.needs_reconnect': 'Google refused a mailbox token: it must be reconnected',
};

/** Each event type with its whole body (envelope + its `data`): what the OpenAPI document lists under `webhooks`. */
export const webhookEventCatalogue = {} as Record<WebhookEventType, { summary: string; payload: z.ZodType }>;
for (const type of WEBHOOK_EVENT_TYPES) {
  webhookEventCatalogue[type] = { summary: SUMMARIES[type], payload: webhookEventBodySchema.extend({ type: z.literal(type), data: webhookEventDataSchemas[type] }) };
}
