import { sql } from 'drizzle-orm';
import { bigint, boolean, check, index, integer, jsonb, pgEnum, pgTable, primaryKey, smallint, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';
import { contacts } from './contacts.js';
import { mailboxes, messages } from './gmail.js';
import { users, workspaceRef } from './workspace.js';

/** Campaigns, their links, the recipients ever mailed and the send ledger. */

export const campaignKindEnum = pgEnum('campaign_kind', ['marketing', 'transactional']);
export const campaignStatusEnum = pgEnum('campaign_status', ['draft', 'scheduled', 'sending', 'paused', 'completed', 'cancelled']);
export const sendStatusEnum = pgEnum('send_status', ['queued', 'sending', 'sent', 'failed', 'skipped']);

export interface CampaignStep {
  afterDays: number;
  subject?: string;
  html?: string;
  text?: string;
}
export interface SendingWindow {
  /** ISO weekdays 1 (Monday) … 7 (Sunday). */
  days: number[];
  startHour: number;
  endHour: number;
  timeZone: string;
}
export type CampaignAudience = { contactIds: string[] } | { segment: Record<string, unknown> };

export const campaigns = pgTable(
  'campaigns',
  {
    id: id(),
    workspaceId: workspaceRef(),
    name: text('name').notNull(),
    kind: campaignKindEnum('kind').notNull(),
    mailboxId: uuid('mailbox_id').references(() => mailboxes.id, { onDelete: 'set null' }),
    subject: text('subject').notNull(),
    html: text('html'),
    text: text('text'),
    /** Preference-center topic; a topic opt-out suppresses only campaigns of that topic. */
    topic: text('topic'),
    status: campaignStatusEnum('status').notNull().default('draft'),
    /** Why sending waits or stopped (paused by a person, needs_reconnect, …). */
    statusReason: text('status_reason'),
    audience: jsonb('audience').$type<CampaignAudience>().notNull(),
    steps: jsonb('steps').$type<CampaignStep[]>().notNull().default([]),
    startAt: timestamp('start_at', { withTimezone: true }),
    sendingWindow: jsonb('sending_window').$type<SendingWindow | null>(),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    launchedAt: timestamp('launched_at', { withTimezone: true }),
    completedAt: timestamp('completed_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    /** P-13: set on deletion; hidden at once, purged after `purgeAfter`. */
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
    purgeAfter: timestamp('purge_after', { withTimezone: true }),
    /**
     * Set when the campaign is cancelled (or deleted while running): its queued sends are being
     * skipped, in batches after the cancel committed (cancelled-sends.ts); cleared once none is
     * queued or in flight. The worker's sweep reads the campaigns that have it, by its index.
     */
    skippingQueuedSince: timestamp('skipping_queued_since', { withTimezone: true }),
  },
  (t) => [
    index('campaigns_workspace_idx').on(t.workspaceId, t.createdAt),
    // What a user created (migration 0048): their own export, and their account's purge (`set null`).
    index('campaigns_created_by_idx').on(t.createdBy, t.id).where(sql`${t.createdBy} is not null`),
    index('campaigns_purge_after_idx').on(t.purgeAfter).where(sql`${t.purgeAfter} is not null`),
    // The send worker's questions every tick (campaigns.repo `activeCampaigns`,
    // `pausedForReconnect`; migration 0032): only campaigns not yet finished are in it, so the
    // question costs the same however many campaigns every workspace has ever sent.
    index('campaigns_running_idx').on(t.status, t.startAt).where(sql`${t.status} in ('scheduled', 'sending', 'paused')`),
    index('campaigns_skipping_queued_idx').on(t.skippingQueuedSince).where(sql`${t.skippingQueuedSince} is not null`),
    // A deleted campaign never sends (migration 0063): its deletion cancels it in the transaction
    // that marks it, and `transition` moves no deleted campaign. Held by the database as well, so
    // that no later path which forgets the second half can leave one scheduled, sending or paused.
    check('campaigns_deleted_not_running', sql`${t.deletedAt} is null or ${t.status} not in ('scheduled', 'sending', 'paused')`),
  ],
);

/** The links of a campaign's bodies, numbered: a click token names (send, link index) and redirects only here. */
export const campaignLinks = pgTable(
  'campaign_links',
  {
    workspaceId: workspaceRef(),
    campaignId: uuid('campaign_id')
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    linkIndex: integer('link_index').notNull(),
    url: text('url').notNull(),
    /** The hidden link no person sees: any hit on it is a machine. */
    honeypot: boolean('honeypot').notNull().default(false),
    /**
     * The steps whose mail holds the link (0 the first mail, 1 the first follow-up …): the
     * "every link at once" rule counts the links of the mail that was scanned, not of the whole
     * sequence (migration 0057). Null for the honeypot (in every mail) and rows written before.
     */
    steps: integer('steps').array(),
  },
  (t) => [primaryKey({ columns: [t.campaignId, t.linkIndex, t.workspaceId] })],
);

/**
 * One row per address a workspace ever mailed from a campaign. Unsubscribe tokens name
 * this row, not a campaign or contact, so they keep working after either is deleted.
 */
export const recipients = pgTable(
  'recipients',
  {
    id: id(),
    workspaceId: workspaceRef(),
    email: text('email').notNull(),
    /** The contact's keyed address hash, copied at launch: the send gate matches hashed opt-outs with it. */
    addressHash: text('address_hash'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('recipients_workspace_email_unique').on(t.workspaceId, sql`lower(${t.email})`)],
);

/**
 * The send ledger, which is also the queue: one row per (campaign, step, recipient address).
 * queued → sending → sent | failed | skipped(reason). Claimed with FOR UPDATE SKIP LOCKED.
 */
export const campaignSends = pgTable(
  'campaign_sends',
  {
    id: id(),
    workspaceId: workspaceRef(),
    campaignId: uuid('campaign_id')
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    step: integer('step').notNull(),
    contactId: uuid('contact_id').references(() => contacts.id, { onDelete: 'set null' }),
    recipientId: uuid('recipient_id')
      .notNull()
      .references(() => recipients.id),
    email: text('email').notNull(),
    status: sendStatusEnum('status').notNull().default('queued'),
    skipReason: text('skip_reason'),
    /** Our Message-ID, fixed before the first attempt: how a crashed send is found in the mailbox. */
    rfc822MessageId: text('rfc822_message_id').notNull(),
    messageId: uuid('message_id').references(() => messages.id, { onDelete: 'set null' }),
    gmailMessageId: text('gmail_message_id'),
    gmailThreadId: text('gmail_thread_id'),
    attempts: integer('attempts').notNull().default(0),
    dueAt: timestamp('due_at', { withTimezone: true }).notNull().defaultNow(),
    claimedAt: timestamp('claimed_at', { withTimezone: true }),
    sentAt: timestamp('sent_at', { withTimezone: true }),
    errorCode: text('error_code'),
    /** The worker holding this `sending` row and until when; every state change is conditional on it (fencing). */
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    /** Mailbox searches already made for a send whose outcome is unknown. */
    resolveLooks: integer('resolve_looks').notNull().default(0),
    createdAt: createdAt(),
  },
  (t) => [
    // The ledger's key, led by the recipient (migration 0027): a later step's reply and bounce
    // checks and the deferral of follow-ups look up one recipient's other steps of a campaign
    // (one descent each), and the foreign key's reference check when a recipient row is deleted
    // (a purge, once per row) probes instead of reading the whole ledger. Lookups by campaign
    // alone have campaign_sends_campaign_status_due_idx.
    uniqueIndex('campaign_sends_recipient_campaign_step_unique').on(t.recipientId, t.campaignId, t.step, t.workspaceId),
    // The `sending` rows (crash recovery, parked sends), keyed by the id so that no index holds the
    // lease's expiry (migration 0036): a batch's reservation and a lease's renewal change only
    // unindexed columns and are HOT updates, on the room the table's fillfactor (85, set in the
    // migration; drizzle has no table option for it) leaves on each page.
    index('campaign_sends_sending_idx').on(t.id).where(sql`${t.status} = 'sending'`),
    index('campaign_sends_campaign_status_due_idx').on(t.campaignId, t.status, t.dueAt),
    // A batch's reservation (migration 0029): a campaign's queued rows in (due_at, id) order, read
    // from the front and stopped after the batch. Partial, so the later steps' lookups of a
    // recipient's earlier sends (no status in them) cannot pick it over the ledger's key.
    index('campaign_sends_queued_due_idx').on(t.campaignId, t.dueAt, t.id).where(sql`${t.status} = 'queued'`),
    index('campaign_sends_message_idx').on(t.messageId).where(sql`${t.messageId} is not null`),
    // A contact's sends (migration 0027): purging a contact finds them, and the foreign key's own
    // lookup when a contact row is deleted (set null, once per deleted row) probes instead of
    // reading the whole ledger.
    index('campaign_sends_contact_idx').on(t.contactId).where(sql`${t.contactId} is not null`),
  ],
);

/**
 * Sends per campaign, state and skip reason, kept by statement-level triggers on
 * campaign_sends (migration 0018) in the statement that changes the ledger; `slot` spreads
 * concurrent writers, readers sum it. Read by src/campaigns/send-counts.repo.ts.
 */
export const campaignSendCounts = pgTable(
  'campaign_send_counts',
  {
    workspaceId: uuid('workspace_id').notNull(),
    campaignId: uuid('campaign_id')
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    status: sendStatusEnum('status').notNull(),
    skipReason: text('skip_reason').notNull().default(''),
    slot: smallint('slot').notNull(),
    n: bigint('n', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ name: 'campaign_send_counts_pk', columns: [t.campaignId, t.status, t.skipReason, t.slot, t.workspaceId] })],
);
