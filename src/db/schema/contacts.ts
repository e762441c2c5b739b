import { sql, type SQL } from 'drizzle-orm';
import { bigint, index, jsonb, pgEnum, pgTable, text, timestamp, uniqueIndex, uuid, type AnyPgColumn } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { workspaceRef } from './workspace.js';

/** The CRM's contacts and their append-only consent history. */

export const consentStatusEnum = pgEnum('consent_status', ['opted_in', 'opted_out']);

/**
 * What contact search matches (`contacts.repo.ts` `list`), and what its trigram index holds:
 * first name, last name and address joined by spaces, so "Ada Lovelace" finds her by her full
 * name. The query must name this very expression for the planner to use the index.
 */
export const contactSearchText = (c: { firstName: AnyPgColumn; lastName: AnyPgColumn; email: AnyPgColumn }): SQL =>
  sql`(coalesce(${c.firstName}, '') || ' ' || coalesce(${c.lastName}, '') || ' ' || ${c.email})`;

export const contacts = pgTable(
  'contacts',
  {
    id: id(),
    workspaceId: workspaceRef(),
    /** Trimmed, domain lowercased; uniqueness ignores case entirely (see the index). */
    email: text('email').notNull(),
    firstName: text('first_name'),
    lastName: text('last_name'),
    attributes: jsonb('attributes').$type<Record<string, unknown>>().notNull().default({}),
    /** When the recipient chose "don't track my opens and clicks" (preference center); null: tracked. */
    trackingRefusedAt: timestamp('tracking_refused_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    /** Keyed hash of the address (suppression/address-hash.ts), written by the app: matches hashed opt-outs. */
    addressHash: text('address_hash'),
    /** P-13: set on deletion; the row is hidden from every API at once and purged after `purgeAfter`. */
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
    purgeAfter: timestamp('purge_after', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('contacts_workspace_email_unique').on(t.workspaceId, sql`lower(${t.email})`).where(sql`${t.deletedAt} is null`),
    index('contacts_purge_after_idx').on(t.purgeAfter).where(sql`${t.purgeAfter} is not null`),
    index('contacts_workspace_created_idx').on(t.workspaceId, t.createdAt, t.id),
    // Only contacts who refused tracking or were deleted: the event writer's per-hit probe (migrations 0019, 0044).
    index('contacts_untracked_idx').on(t.workspaceId, sql`lower(${t.email})`).where(sql`${t.trackingRefusedAt} is not null or ${t.deletedAt} is not null`),
    // The same contacts by id: a send's own contact who refused tracking after its address changed (migration 0046).
    index('contacts_untracked_id_idx').on(t.workspaceId, t.id).where(sql`${t.trackingRefusedAt} is not null or ${t.deletedAt} is not null`),
    // Contact search: the workspace and the trigrams of contactSearchText in one GIN index
    // (btree_gin and pg_trgm; migrations 0030, 0052), so a search reads only its workspace's
    // matches, however common the text is in other workspaces. The operator class rides in the
    // expression (drizzle's `.op()` is for plain columns). New entries wait in a pending list of
    // at most 256 kB, merged into the index when it fills: every search reads that list, and
    // PGlite has no autovacuum to merge it sooner (without the list an import took twice as
    // long; with the default 4 MB a search could read 512 pages of it).
    index('contacts_search_workspace_trgm_idx')
      .using('gin', t.workspaceId, sql`${contactSearchText(t)} gin_trgm_ops`)
      .with({ fastupdate: true, gin_pending_list_limit: 256 }),
  ],
);

/** Append-only (P-11): a trigger in the migrations refuses UPDATE; the latest row wins. */
export const consents = pgTable(
  'consents',
  {
    id: id(),
    workspaceId: workspaceRef(),
    contactId: uuid('contact_id')
      .notNull()
      .references(() => contacts.id, { onDelete: 'cascade' }),
    status: consentStatusEnum('status').notNull(),
    source: text('source').notNull(),
    policyVersion: text('policy_version').notNull(),
    /** `user:<id>`, `key:<id>`, `import:user:<id>` or `import:key:<id>`, `recipient` (the unsubscribe link, the preference center) … who recorded it. */
    actor: text('actor').notNull(),
    // clock_timestamp, not now(): two records in one transaction still get an order.
    at: timestamp('at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
    /**
     * The order records were written in (migration 0041): of two records at the same time (an
     * import's date-only values are all midnight), the one written later is the latest. The
     * random `id` broke such ties by chance, so a later opt-out could lose to an earlier opt-in.
     */
    seq: bigint('seq', { mode: 'number' }).notNull().generatedAlwaysAsIdentity(),
  },
  // The latest record of a contact is the last entry of (contact, workspace): no sort
  // (contacts/consent-records.ts latestConsentSql). Contact first (migration 0027): every lookup names both,
  // and the foreign key's cascade when a contact is deleted names the contact alone.
  // A user's own export reads the records they made, in id order (migration 0048).
  (t) => [index('consents_latest_idx').on(t.contactId, t.workspaceId, t.at, t.seq), index('consents_actor_idx').on(t.actor, t.id)],
);

export type ConsentStatus = (typeof consentStatusEnum.enumValues)[number];
