import { index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { createdAt, id } from './columns.js';
import { messages } from './gmail.js';
import { users, workspaceRef } from './workspace.js';

/** Server-to-server access: API keys and the Idempotency-Key answers kept for replay. */

/** `itk_…` keys; only their SHA-256 is stored (the key itself is shown once, at creation). */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: id(),
    workspaceId: workspaceRef(),
    /** The admin who created it; the key acts on their behalf (their mailboxes), never above their role. */
    createdBy: uuid('created_by')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    scopes: text('scopes').array().notNull(),
    keyHash: text('key_hash').notNull().unique(),
    /** The first characters of the key, so a person can tell their keys apart in a list. */
    keyPrefix: text('key_prefix').notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [index('api_keys_workspace_created_idx').on(t.workspaceId, t.createdAt)],
);

/** One row per Idempotency-Key: `in_progress` while the first request runs, then its answer. */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    workspaceId: workspaceRef(),
    /** actorOf(auth): `user:<id>` or `key:<id>`. */
    caller: text('caller').notNull(),
    /** The route pattern, e.g. `POST /api/campaigns/:id/launch`. */
    route: text('route').notNull(),
    key: text('key').notNull(),
    /** SHA-256 of the concrete path and the body: the same key with another request is refused. */
    requestHash: text('request_hash').notNull(),
    state: text('state').$type<'in_progress' | 'completed'>().notNull(),
    responseStatus: integer('response_status'),
    responseBody: jsonb('response_body'),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    /**
     * The 1:1 send this request claimed, linked in the claim's transaction: after a crash the key
     * stays `in_progress`, and a retry answers this message's state instead (idempotency/README.md).
     */
    messageId: uuid('message_id').references(() => messages.id, { onDelete: 'set null' }),
    /**
     * While a request that links its side effect (POST /api/messages) runs and has not linked it
     * yet: renewed by a timer, cleared by the link. Expired and unlinked, its request is gone and
     * did nothing, and a retry may take the key over; null, never (idempotency/README.md).
     */
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.caller, t.route, t.key] }),
    index('idempotency_keys_expires_at_idx').on(t.expiresAt),
    // Deleting a message (a gate refusal's claim, a purge) looks up the keys that name it.
    index('idempotency_keys_message_id_idx').on(t.messageId),
  ],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type IdempotencyKeyRow = typeof idempotencyKeys.$inferSelect;
