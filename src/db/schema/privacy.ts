import { sql } from 'drizzle-orm';
import { index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { createdAt, id } from './columns.js';
import { messages } from './gmail.js';
import { users, workspaceRef } from './workspace.js';

/** Access grants to Gmail content (P-03) and the published policy versions (P-18). */

/**
 * The mailbox owner's affirmative agreement that one named member may read one message
 * until `expires_at`, unless revoked first (src/privacy/README.md, "Gmail data guard").
 */
export const gmailAccessGrants = pgTable(
  'gmail_access_grants',
  {
    id: id(),
    workspaceId: workspaceRef(),
    messageId: uuid('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    /** The owner of the message's mailbox, who agreed. */
    grantedBy: uuid('granted_by')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    granteeUserId: uuid('grantee_user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** Why, in the owner's words (a support ticket number…): shown to both, never mail content. */
    reason: text('reason'),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revokedBy: uuid('revoked_by'),
    createdAt: createdAt(),
  },
  (t) => [
    index('gmail_access_grants_grantee_idx').on(t.workspaceId, t.granteeUserId, t.messageId),
    index('gmail_access_grants_granted_by_idx').on(t.workspaceId, t.grantedBy, t.createdAt),
  ],
);

/**
 * Every policy version ever published, with the Limited Use disclosure text shown before
 * Gmail consent under it. Global (one policy for the service), append-only by trigger.
 */
export const policyVersions = pgTable('policy_versions', {
  version: text('version').primaryKey(),
  disclosure: jsonb('disclosure').$type<{ title: string; points: string[] }>().notNull(),
  /** `system:boot` or `operator:<name>` (scripts/publish-policy.ts). */
  publishedBy: text('published_by').notNull(),
  publishedAt: timestamp('published_at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
});

export type GmailAccessGrantRow = typeof gmailAccessGrants.$inferSelect;
export type PolicyVersionRow = typeof policyVersions.$inferSelect;
