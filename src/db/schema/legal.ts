import { index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { users, workspaceRef } from './workspace.js';

/** P-16: legal requests and the exact scope a disclosure for each may cover. */

export const legalRequests = pgTable(
  'legal_requests',
  {
    id: id(),
    workspaceId: workspaceRef(),
    authority: text('authority').notNull(),
    legalBasis: text('legal_basis').notNull(),
    reference: text('reference').notNull(),
    contactIds: uuid('contact_ids').array().notNull().default([]),
    addresses: text('addresses').array().notNull().default([]),
    /** Keyed hashes of addresses taken out of `addresses` when their contact was purged (P-13). */
    erasedAddressHashes: text('erased_address_hashes').array().notNull().default([]),
    mailboxIds: uuid('mailbox_ids').array().notNull().default([]),
    fromAt: timestamp('from_at', { withTimezone: true }).notNull(),
    toAt: timestamp('to_at', { withTimezone: true }).notNull(),
    dataKinds: text('data_kinds').array().notNull(),
    recordedBy: uuid('recorded_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    lastDisclosedAt: timestamp('last_disclosed_at', { withTimezone: true }),
  },
  (t) => [index('legal_requests_workspace_created_idx').on(t.workspaceId, t.createdAt)],
);
