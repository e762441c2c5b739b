import { sql } from 'drizzle-orm';
import { index, pgEnum, pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { users, workspaceRef } from './workspace.js';

/** The workspace's suppression list. */

export const suppressionReasonEnum = pgEnum('suppression_reason', ['unsubscribe', 'bounce', 'complaint', 'manual']);

/** Workspace-wide "never mail this address" (P-08). Checked inside every send's transaction. */
export const suppressions = pgTable(
  'suppressions',
  {
    id: id(),
    workspaceId: workspaceRef(),
    /** Cleared when the contact is purged: the entry then lives on as `addressHash` alone. */
    email: text('email'),
    /** HMAC-SHA256 of the normalized address (suppression/address-hash.ts): how a purged opt-out still matches. */
    addressHash: text('address_hash'),
    /** `all`, or `topic:<name>` for a topic opt-out from the preference center. */
    scope: text('scope').notNull().default('all'),
    reason: suppressionReasonEnum('reason').notNull(),
    source: text('source'),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    /**
     * A CRM user's reason (`complaint`, `manual`) added over the recipient's own opt-out (migration
     * 0042): the entry keeps its reason and source (the campaign's unsubscribe count, the consent
     * evidence its removal needs), and the recipient can no longer undo it from the preference page.
     */
    heldReason: suppressionReasonEnum('held_reason'),
  },
  (t) => [
    uniqueIndex('suppressions_workspace_email_scope_unique').on(t.workspaceId, sql`lower(${t.email})`, t.scope),
    uniqueIndex('suppressions_workspace_hash_scope_unique').on(t.workspaceId, t.addressHash, t.scope),
    // Campaign stats count a campaign's unsubscribes by source (migration 0018).
    index('suppressions_unsubscribe_source_idx').on(t.workspaceId, t.source).where(sql`${t.reason} = 'unsubscribe'`),
    // The list's pages, newest first (migration 0027): a page reads its rows, not the workspace's whole list sorted.
    index('suppressions_workspace_created_idx').on(t.workspaceId, t.createdAt, t.id),
    // The same pages filtered by reason or by a topic (migration 0048): a filter few entries match
    // walked the whole list looking for a page's worth. Topics only (`all` is most of the list, a
    // page of it is found at once): the send gate's probe asks for `all` or the campaign's topic,
    // and with `all` in the index its generic plan chose it over the unique address indexes.
    index('suppressions_workspace_reason_created_idx').on(t.workspaceId, t.reason, t.createdAt, t.id),
    index('suppressions_workspace_topic_created_idx').on(t.workspaceId, t.scope, t.createdAt, t.id).where(sql`${t.scope} <> 'all'`),
    // A user's own export (P-12) and their account's purge (the foreign key's `set null`) find the
    // entries they made (migration 0048); both read the whole table without it, every tenant's.
    index('suppressions_created_by_idx').on(t.createdBy, t.id).where(sql`${t.createdBy} is not null`),
  ],
);
