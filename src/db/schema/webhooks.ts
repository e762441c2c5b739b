import { sql } from 'drizzle-orm';
import { boolean, index, integer, jsonb, pgEnum, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { users, workspaceRef } from './workspace.js';

/** Outbound webhooks (src/webhooks/README.md): endpoints, the event outbox, deliveries and their attempts. */

/** A signing secret replaced by a rotation: sealed, and the instant (ISO 8601) it stops signing. */
export interface RetiredSecret {
  ciphertext: string;
  expiresAt: string;
}

/** `healthy`; `failing` since the first failed attempt after a success; `disabled_after_failures` once failure lasted too long. */
export const webhookEndpointStatusEnum = pgEnum('webhook_endpoint_status', ['healthy', 'failing', 'disabled_after_failures']);
/** `pending` until a 2xx (`delivered`) or until the retry window ends (`failed`). */
export const webhookDeliveryStatusEnum = pgEnum('webhook_delivery_status', ['pending', 'delivered', 'failed']);

export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: id(),
    workspaceId: workspaceRef(),
    url: text('url').notNull(),
    description: text('description'),
    eventTypes: text('event_types').array().notNull(),
    /** The signing secret, sealed by the token cipher (context `webhook:<id>:secret`): signing needs it back. */
    secretCiphertext: text('secret_ciphertext').notNull(),
    /**
     * Secrets replaced by rotations and still in their grace period, each sealed like the secret
     * (context `webhook:<id>:previous`) with the time it stops signing; every one of them signs
     * each delivery beside the current secret until then (webhooks.service.ts rotateSecret).
     */
    retiredSecrets: jsonb('retired_secrets').$type<RetiredSecret[]>().notNull().default(sql`'[]'::jsonb`),
    /**
     * Before migration 0043: the one secret replaced by the last rotation. Kept for one release
     * (its delivery workers read it during a rolling deploy) and still written with the newest
     * replaced secret; nothing here reads it. A later release drops both.
     */
    previousSecretCiphertext: text('previous_secret_ciphertext'),
    previousSecretExpiresAt: timestamp('previous_secret_expires_at', { withTimezone: true }),
    enabled: boolean('enabled').notNull().default(true),
    status: webhookEndpointStatusEnum('status').notNull().default('healthy'),
    consecutiveFailures: integer('consecutive_failures').notNull().default(0),
    failingSince: timestamp('failing_since', { withTimezone: true }),
    lastSuccessAt: timestamp('last_success_at', { withTimezone: true }),
    disabledAt: timestamp('disabled_at', { withTimezone: true }),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    /**
     * The member who answers for where it sends the workspace's data: whoever set its URL or last
     * turned it on. Their leaving or removal turns it off (auth.service.ts removeMembership).
     */
    vouchedBy: uuid('vouched_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [index('webhook_endpoints_workspace_idx').on(t.workspaceId)],
);

/** The outbox: one row per event, written in the transaction of the fact it reports. */
export const webhookEvents = pgTable(
  'webhook_events',
  {
    id: id(),
    workspaceId: workspaceRef(),
    type: text('type').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull(),
    /** Ids, the workspace's own contacts' addresses and verdicts only: never a body, subject or Gmail content. */
    data: jsonb('data').$type<Record<string, unknown>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    index('webhook_events_workspace_created_idx').on(t.workspaceId, t.createdAt),
    // A contact's purge finds the events about them by these two (privacy/purge.repo.ts); it read
    // the workspace's whole outbox (up to 30 days of events) for each contact purged.
    index('webhook_events_contact_idx')
      .on(t.workspaceId, sql`(${t.data} ->> 'contactId')`)
      .where(sql`${t.data} ? 'contactId'`),
    index('webhook_events_email_idx')
      .on(t.workspaceId, sql`lower(${t.data} ->> 'email')`)
      .where(sql`${t.data} ? 'email'`),
  ],
);

/** One event owed to one endpoint; claimed by a worker under a lease, retried with backoff. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: id(),
    workspaceId: workspaceRef(),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventId: uuid('event_id')
      .notNull()
      .references(() => webhookEvents.id, { onDelete: 'cascade' }),
    status: webhookDeliveryStatusEnum('status').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    lastResponseStatus: integer('last_response_status'),
    lastError: text('last_error'),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    /** A redelivery asked for by a person (POST …/redeliver), not the outbox's own. */
    manual: boolean('manual').notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [
    index('webhook_deliveries_due_idx').on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    // The claim's probe per enabled endpoint (webhooks.repo.ts claimDue: fair shares), migration 0060.
    index('webhook_deliveries_endpoint_due_idx').on(t.endpointId, t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    index('webhook_deliveries_endpoint_idx').on(t.workspaceId, t.endpointId, t.createdAt),
    index('webhook_deliveries_event_idx').on(t.eventId),
  ],
);

/** The delivery log: one row per HTTP attempt (status, latency, response code). */
export const webhookDeliveryAttempts = pgTable(
  'webhook_delivery_attempts',
  {
    id: id(),
    workspaceId: workspaceRef(),
    deliveryId: uuid('delivery_id')
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: 'cascade' }),
    endpointId: uuid('endpoint_id').notNull(),
    eventId: uuid('event_id').notNull(),
    attempt: integer('attempt').notNull(),
    /** `delivered`, `http_error`, `timeout`, `network_error`, `refused_target`, `redirect_not_followed`. */
    outcome: text('outcome').notNull(),
    responseStatus: integer('response_status'),
    latencyMs: integer('latency_ms').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('webhook_delivery_attempts_delivery_idx').on(t.deliveryId, t.attempt)],
);
