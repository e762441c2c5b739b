import { sql } from 'drizzle-orm';
import { type AnyPgColumn, boolean, doublePrecision, index, integer, jsonb, pgEnum, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { contacts } from './contacts.js';
import { users, workspaceRef } from './workspace.js';

/** Connected Gmail mailboxes, the mail they sent and received, what sync found in them, and the limits every process shares per mailbox. */

type MessageAddressColumns = Record<'fromAddress' | 'toAddresses' | 'ccAddresses' | 'bccAddresses', AnyPgColumn>;

/**
 * Every address a message names, lowercased and bare (`Name <a@b>` → `a@b`): the expression
 * `messages_bare_addresses_idx` indexes (migration 0047 defines the function). One definition for
 * the index and the lookups by person, since the planner uses the index only for this exact
 * expression.
 */
export const messageBareAddresses = (m: MessageAddressColumns) => sql`message_bare_addresses(${m.fromAddress}, ${m.toAddresses}, ${m.ccAddresses}, ${m.bccAddresses})`;

/**
 * A resync that found more mail since the last sync than it reads (GMAIL_RESYNC_MAX_MESSAGES):
 * when it ran (`at`), from when it looked (`since`: the last sync, a day earlier for clocks), and
 * how many of the newest it read (`read`). Mail between `since` and the oldest of those was not
 * read: no reply or bounce in it was seen. ISO times.
 */
export interface SyncGap {
  at: string;
  since: string;
  read: number;
}

/**
 * A resync's progress (gmail/sync-pass.ts): of the messages its window listed (`after:<since>`,
 * epoch seconds) as of `historyId` (the try's start), oldest first, every one up to and including
 * `throughId` was read. What entered the listing later is in the history since `historyId`.
 * `counts`: what the tries read up to there and did not keep (sync health), added when one
 * succeeds — not before, so that a try that must start over does not count them twice.
 */
export interface ResyncCheckpoint {
  since: number;
  throughId: string;
  historyId: string;
  at: string;
  counts?: Record<string, number>;
}

export const mailboxStatusEnum = pgEnum('mailbox_status', ['active', 'needs_reconnect']);
export const mailboxKindEnum = pgEnum('mailbox_kind', ['workspace', 'consumer']);

/** A connected Gmail mailbox. Tokens are AES-256-GCM ciphertexts (P-06), never plaintext. */
export const mailboxes = pgTable(
  'mailboxes',
  {
    id: id(),
    workspaceId: workspaceRef(),
    /** The member who connected it: the owner of its Gmail content (P-03). */
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    email: text('email').notNull(),
    kind: mailboxKindEnum('kind').notNull(),
    status: mailboxStatusEnum('status').notNull().default('active'),
    statusReason: text('status_reason'),
    scopes: text('scopes').array().notNull(),
    /** Version of the Limited Use disclosure shown right before consent (P-05, P-18). */
    disclosureVersion: text('disclosure_version').notNull(),
    refreshTokenEnc: text('refresh_token_enc').notNull(),
    accessTokenEnc: text('access_token_enc'),
    accessTokenExpiresAt: timestamp('access_token_expires_at', { withTimezone: true }),
    dailyBudget: integer('daily_budget').notNull(),
    syncEnabled: boolean('sync_enabled').notNull().default(false),
    historyId: text('history_id'),
    watchExpiresAt: timestamp('watch_expires_at', { withTimezone: true }),
    lastSyncAt: timestamp('last_sync_at', { withTimezone: true }),
    lastSyncError: text('last_sync_error'),
    /**
     * When a sync pass last failed (migration 0049). Later than `lastSyncAt`: the mailbox has not
     * been read since, and a sequence from it waits (campaigns/mailbox-hold.ts): a reply that
     * arrived meanwhile must stop a follow-up first. (`lastSyncError` also carries a good pass's gap note.)
     */
    lastSyncFailedAt: timestamp('last_sync_failed_at', { withTimezone: true }),
    messagesSeen: integer('messages_seen').notNull().default(0),
    /** Counters of what sync read, kept and skipped (and why): `SyncHealthCounts` in gmail/sync-health.ts. */
    syncHealth: jsonb('sync_health').$type<Record<string, number>>().notNull().default({}),
    /**
     * The latest resync that could not read everything since the last sync (SyncGap). Kept after
     * later syncs succeed: the mail it did not read stays unread.
     */
    lastSyncGap: jsonb('last_sync_gap').$type<SyncGap>(),
    /**
     * How far an unfinished resync got (ResyncCheckpoint, migration 0051): the next resync of the
     * same window goes on after it instead of reading everything again. Cleared by a good pass.
     */
    resyncCheckpoint: jsonb('resync_checkpoint').$type<ResyncCheckpoint>(),
    connectedAt: timestamp('connected_at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: createdAt(),
    /** P-13: set on disconnect (after revoking at Google); hidden at once, purged after `purgeAfter`. */
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
    purgeAfter: timestamp('purge_after', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('mailboxes_workspace_email_unique').on(t.workspaceId, sql`lower(${t.email})`).where(sql`${t.deletedAt} is null`),
    index('mailboxes_purge_after_idx').on(t.purgeAfter).where(sql`${t.purgeAfter} is not null`),
    // Every record of one Gmail address, in any workspace, live or disconnected (migration 0054):
    // the daily budget is the Google account's, so its count and its lock find them by address.
    index('mailboxes_address_idx').on(sql`lower(${t.email})`),
  ],
);

export const messageDirectionEnum = pgEnum('message_direction', ['outbound', 'inbound']);
export const messageStatusEnum = pgEnum('message_status', ['sending', 'sent', 'failed', 'received']);

/**
 * Every message we sent (1:1 or campaign) and the metadata of synced messages that
 * involve a CRM contact. No bodies: content is fetched on demand through the privacy guard.
 */
export const messages = pgTable(
  'messages',
  {
    id: id(),
    workspaceId: workspaceRef(),
    mailboxId: uuid('mailbox_id').references(() => mailboxes.id, { onDelete: 'set null' }),
    direction: messageDirectionEnum('direction').notNull(),
    status: messageStatusEnum('status').notNull(),
    /** True for rows read from Gmail by sync: deleted when the mailbox is disconnected (P-06). */
    synced: boolean('synced').notNull().default(false),
    /** Our RFC 822 Message-ID (without angle brackets) for outbound; the header's for inbound. */
    rfc822MessageId: text('rfc822_message_id'),
    gmailMessageId: text('gmail_message_id'),
    gmailThreadId: text('gmail_thread_id'),
    inReplyTo: text('in_reply_to'),
    subject: text('subject'),
    fromAddress: text('from_address').notNull(),
    toAddresses: text('to_addresses').array().notNull(),
    ccAddresses: text('cc_addresses').array().notNull().default(sql`'{}'::text[]`),
    /** Outbound only, and never shown: kept so that a bounce of a Bcc recipient can be matched to its send. */
    bccAddresses: text('bcc_addresses').array().notNull().default(sql`'{}'::text[]`),
    sentBy: uuid('sent_by').references(() => users.id, { onDelete: 'set null' }),
    errorCode: text('error_code'),
    /** 1:1 sends: the worker holding the `sending` row, until when (see campaigns/SEND-LEDGER.md, leases). */
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    /** Mailbox searches already made for a send whose outcome is unknown. */
    resolveLooks: integer('resolve_looks').notNull().default(0),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: createdAt(),
  },
  (t) => [
    // Partial (migration 0036): a row without a Gmail id yet (a claimed send) needs no entry. The
    // sync's insert names the predicate in its conflict target since the previous release, so
    // its processes keep working during a rolling deploy from it (README: upgrades go one release
    // at a time); the lookups by Gmail id imply the predicate.
    uniqueIndex('messages_mailbox_gmail_id_unique').on(t.mailboxId, t.gmailMessageId, t.workspaceId).where(sql`${t.gmailMessageId} is not null`),
    // Partial on the lease too (migration 0035): a campaign send's row has no lease (the ledger
    // holds it), and got an entry at every claim; the 1:1 lease look implies the predicate.
    index('messages_lease_idx').on(t.leaseExpiresAt).where(sql`${t.status} = 'sending' and ${t.leaseExpiresAt} is not null`),
    index('messages_workspace_rfc822_idx').on(t.workspaceId, t.rfc822MessageId),
    index('messages_mailbox_at_idx').on(t.mailboxId, t.direction, t.at),
    // What a user sent (migration 0048): their own export (P-12), and their account's purge (the
    // foreign key's `set null`), which read every tenant's messages without it.
    index('messages_sent_by_idx').on(t.sentBy, t.id).where(sql`${t.sentBy} is not null`),
    // Every address a message names, lowercased and bare (`Name <a@b>` → `a@b`), for the lookups
    // by person: a contact's purge and a data subject's export (migration 0047, which defines
    // the function). Without it each one read every message of the workspace.
    index('messages_bare_addresses_idx').using('gin', messageBareAddresses(t)),
  ],
);

/** Which contacts a message involves, so a contact's timeline is one indexed lookup. */
export const messageContacts = pgTable(
  'message_contacts',
  {
    messageId: uuid('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    contactId: uuid('contact_id')
      .notNull()
      .references(() => contacts.id, { onDelete: 'cascade' }),
    workspaceId: uuid('workspace_id').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.messageId, t.contactId, t.workspaceId] }),
    // Contact first (migration 0027): the foreign key's cascade when a contact is deleted looks
    // it up by contact alone; the timeline's (workspace, contact) lookup uses it as well.
    index('message_contacts_contact_idx').on(t.contactId, t.workspaceId),
  ],
);

/** A person's reply, an automatic reply (out of office…), a failed delivery (hard/soft in detail.kind), a delayed one. */
export const mailEventTypeEnum = pgEnum('mail_event_type', ['reply', 'auto_reply', 'bounce', 'delay']);

/** Replies, automatic replies, bounces and delays found by reading the mailbox, tied to the message of ours they are about. */
export const mailEvents = pgTable(
  'mail_events',
  {
    id: id(),
    workspaceId: workspaceRef(),
    messageId: uuid('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    type: mailEventTypeEnum('type').notNull(),
    /** The Gmail id of the reply or DSN: one event per source message. */
    sourceGmailMessageId: text('source_gmail_message_id').notNull(),
    recipient: text('recipient'),
    /**
     * The campaign and recipient of the send that produced the message (null for 1:1 mail), set
     * by a trigger when the event is written (migration 0021): a campaign's stats count its own mail events
     * through one index, not the workspace's history. No foreign keys (the purge deletes these rows).
     */
    campaignId: uuid('campaign_id'),
    recipientId: uuid('recipient_id'),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('mail_events_source_unique').on(t.messageId, t.type, t.sourceGmailMessageId, sql`coalesce(${t.recipient}, '')`, t.workspaceId),
    index('mail_events_recipient_idx').on(t.workspaceId, sql`lower(${t.recipient})`, t.type, t.at),
    index('mail_events_campaign_idx').on(t.workspaceId, t.campaignId, t.type, t.recipientId).where(sql`${t.campaignId} is not null`),
  ],
);

export type MailboxStatus = (typeof mailboxStatusEnum.enumValues)[number];

/**
 * Invariant 10: one row per mailbox shared by every process. Its quota and sends-per-minute
 * buckets and rate-limit pause are changed only by the `mailbox_take_units` function
 * (migrations 0006, 0020, 0023, 0054) and gmail/limit-store.ts; `sync_*` is the lease of the one
 * sync that may run for the mailbox. The daily budget's headroom is the address's since 0054
 * (`mailbox_budget_accounts`); `budget_*` here are no longer read (kept for the previous
 * release's processes during a rolling deploy, which still write them).
 */
export const mailboxLimits = pgTable('mailbox_limits', {
  mailboxId: uuid('mailbox_id')
    .primaryKey()
    .references(() => mailboxes.id, { onDelete: 'cascade' }),
  quotaUnits: doublePrecision('quota_units').notNull(),
  quotaAt: timestamp('quota_at', { withTimezone: true }).notNull(),
  sendTokens: doublePrecision('send_tokens').notNull(),
  sendAt: timestamp('send_at', { withTimezone: true }).notNull(),
  budgetLeft: integer('budget_left'),
  budgetCountedAt: timestamp('budget_counted_at', { withTimezone: true }),
  /** The last grant of a unit of the budget: a recount waits until that send's claim (its `sending` row) can be seen. */
  budgetGrantedAt: timestamp('budget_granted_at', { withTimezone: true }),
  pausedUntil: timestamp('paused_until', { withTimezone: true }),
  syncOwner: text('sync_owner'),
  syncLeaseUntil: timestamp('sync_lease_until', { withTimezone: true }),
  syncStartedAt: timestamp('sync_started_at', { withTimezone: true }),
  syncRequestedAt: timestamp('sync_requested_at', { withTimezone: true }),
});

/**
 * Sends the daily budget must still count after a purge deleted their `messages` rows (a
 * contact's or campaign's purge of mail sent in the last 24 h): how many per mailbox and
 * minute, nothing else — no address, no content. Written by the purge (privacy/purge.repo.ts,
 * `mailbox_record_purged_sends`), read by the budget count (`mailbox_budget_used`, migration
 * 0026), rows older than a day dropped when the next ones are written.
 */
export const mailboxPurgedSends = pgTable(
  'mailbox_purged_sends',
  {
    workspaceId: workspaceRef(),
    mailboxId: uuid('mailbox_id')
      .notNull()
      .references(() => mailboxes.id, { onDelete: 'cascade' }),
    minute: timestamp('minute', { withTimezone: true }).notNull(),
    sends: integer('sends').notNull(),
  },
  (t) => [primaryKey({ name: 'mailbox_purged_sends_pk', columns: [t.mailboxId, t.minute, t.workspaceId] })],
);

/**
 * The daily budget's shared state per Gmail address (lower-cased), migration 0054: Gmail's daily
 * limit is the account's, and one address can have several mailbox records at once (connected
 * again after a disconnect, connected in several workspaces). `mailbox_take_units` locks this row
 * for every new send from any of them, so its headroom is taken one grant at a time across every
 * process and workspace. Not a workspace's data: what it holds (a count, and when it was taken)
 * is shown to no one. Deleted with the address's last mailbox record (a trigger).
 */
export const mailboxBudgetAccounts = pgTable('mailbox_budget_accounts', {
  address: text('address').primaryKey(),
  /** What the last count found used in the 24 h before it, plus every unit granted since; null: count again at the next send. */
  budgetUsed: integer('budget_used'),
  budgetCountedAt: timestamp('budget_counted_at', { withTimezone: true }),
  /** The last grant of a unit: a count waits until that send's claim (its `sending` row) can be seen. */
  budgetGrantedAt: timestamp('budget_granted_at', { withTimezone: true }),
});

/**
 * A workspace's own daily budget of a Gmail address (migration 0055): the headroom of the sends
 * that workspace's records of the address may make, beside the account's
 * (`mailbox_budget_accounts`). A budget one workspace sets limits its own sends only: it never
 * throttles the same account connected in another workspace (an attacker's finding: the lowest
 * budget of any workspace used to apply to all). `mailbox_take_units` locks this row after the
 * account's. Deleted with the workspace's last record of the address (a trigger) or the workspace.
 */
export const mailboxBudgetWorkspaces = pgTable(
  'mailbox_budget_workspaces',
  {
    address: text('address').notNull(),
    workspaceId: workspaceRef(),
    /** What the last count found this workspace sent in the 24 h before it, plus every unit granted since; null: count again. */
    budgetUsed: integer('budget_used'),
    budgetCountedAt: timestamp('budget_counted_at', { withTimezone: true }),
    /** This workspace's last grant (migration 0058): its own count waits for that send's claim only, not for other workspaces' grants. */
    budgetGrantedAt: timestamp('budget_granted_at', { withTimezone: true }),
  },
  (t) => [primaryKey({ name: 'mailbox_budget_workspaces_pk', columns: [t.address, t.workspaceId] })],
);
