import { sql } from 'drizzle-orm';
import { index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { id } from './columns.js';

/** The append-only audit log. */

/**
 * Append-only evidence (POLICY.md "Evidence"): suppression removals, non-owner reads of
 * Gmail content, deletions, disclosures. The compliance report is built from these rows.
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: id(),
    workspaceId: uuid('workspace_id').notNull(),
    /** `user:<id>`, `recipient:<id>`, `system` … */
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    subjectType: text('subject_type').notNull(),
    subjectId: text('subject_id'),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    /** The request that caused this row (the X-Request-Id of its log line), when there was one. */
    requestId: text('request_id'),
    at: timestamp('at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
  },
  (t) => [
    index('audit_log_workspace_at_idx').on(t.workspaceId, t.at),
    index('audit_log_at_idx').on(t.at),
    index('audit_log_workspace_action_at_idx').on(t.workspaceId, t.action, t.at),
    // The compliance report finds each deletion request's completion by subject (migration 0047):
    // `is not distinct from` on subject_id could not use an index, coalesce(…, '') can.
    index('audit_log_deletion_completed_idx')
      .on(t.workspaceId, t.subjectType, sql`coalesce(${t.subjectId}, '')`, t.at)
      .where(sql`${t.action} = 'deletion.completed'`),
    // A user's own export reads what they did, in id order (migration 0048): without it, every
    // tenant's audit rows.
    index('audit_log_actor_idx').on(t.actor, t.id),
    // A closed account's purge finds the workspaces its closure was recorded in (migration 0048).
    index('audit_log_deletion_requested_idx').on(t.subjectType, t.subjectId).where(sql`${t.action} = 'deletion.requested'`),
  ],
);
