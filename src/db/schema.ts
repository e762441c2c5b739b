import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

/*
 * Every table that holds workspace data carries `workspace_id`, and every query of
 * those tables filters by it (invariant 7). Every primary and unique key of such a table
 * includes `workspace_id` or a random UUID, so the tables can be distributed by workspace
 * on Citus (docs/SCALING.md; test/integration/schema-tenancy.test.ts holds new tables to it). Ids are random UUIDs so that they can
 * neither be guessed nor enumerated.
 */

const id = () => uuid('id').primaryKey().defaultRandom();
const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();

/** The owning workspace: deleting a workspace deletes everything it holds. */
const workspaceRef = () =>
  uuid('workspace_id')
    .notNull()
    .references(() => workspaces.id, { onDelete: 'cascade' });

export const roleEnum = pgEnum('member_role', ['owner', 'admin', 'member']);
export const consentStatusEnum = pgEnum('consent_status', ['opted_in', 'opted_out']);

export const workspaces = pgTable('workspaces', {
  id: id(),
  name: text('name').notNull(),
  /** Printed in every marketing mail's footer (CAN-SPAM and friends); required to launch one. */
  postalAddress: text('postal_address'),
  createdAt: createdAt(),
});

export const users = pgTable(
  'users',
  {
    id: id(),
    /** Lowercased whole: a login address is matched case-insensitively. */
    email: text('email').notNull(),
    name: text('name'),
    /** `scrypt$N$r$p$salt$hash`, see auth/passwords.ts (P-17). */
    passwordHash: text('password_hash').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('users_email_unique').on(t.email)],
);

export const memberships = pgTable(
  'memberships',
  {
    workspaceId: workspaceRef(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: roleEnum('role').notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.userId] }), index('memberships_user_idx').on(t.userId)],
);

export const invitations = pgTable(
  'invitations',
  {
    id: id(),
    workspaceId: workspaceRef(),
    email: text('email').notNull(),
    role: roleEnum('role').notNull(),
    /** SHA-256 of the invitation token; the token itself is shown once, to the inviter. */
    tokenHash: text('token_hash').notNull(),
    invitedBy: uuid('invited_by').references(() => users.id, { onDelete: 'set null' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    acceptedAt: timestamp('accepted_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('invitations_token_hash_unique').on(t.tokenHash), index('invitations_workspace_idx').on(t.workspaceId)],
);

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
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('contacts_workspace_email_unique').on(t.workspaceId, sql`lower(${t.email})`),
    index('contacts_workspace_created_idx').on(t.workspaceId, t.createdAt, t.id),
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
    /** `user:<id>`, `import:<user id>`, `recipient` … who recorded it. */
    actor: text('actor').notNull(),
    // clock_timestamp, not now(): two records in one transaction still get an order.
    at: timestamp('at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
  },
  // The latest record of a contact is the last entry of (workspace, contact): no sort (campaigns/eligibility-sql.ts).
  (t) => [index('consents_latest_idx').on(t.workspaceId, t.contactId, t.at, t.id)],
);

export type Role = (typeof roleEnum.enumValues)[number];
export type ConsentStatus = (typeof consentStatusEnum.enumValues)[number];

/* ---------------------------------------------------------------- Gmail */

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
    messagesSeen: integer('messages_seen').notNull().default(0),
    /** Counters of what sync read, kept and skipped (and why): `SyncHealthCounts` in gmail/sync-health.ts. */
    syncHealth: jsonb('sync_health').$type<Record<string, number>>().notNull().default({}),
    connectedAt: timestamp('connected_at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('mailboxes_workspace_email_unique').on(t.workspaceId, sql`lower(${t.email})`)],
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
    sentBy: uuid('sent_by').references(() => users.id, { onDelete: 'set null' }),
    errorCode: text('error_code'),
    /** 1:1 sends: the worker holding the `sending` row, until when (see campaigns/README.md, leases). */
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    /** Mailbox searches already made for a send whose outcome is unknown. */
    resolveLooks: integer('resolve_looks').notNull().default(0),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('messages_mailbox_gmail_id_unique').on(t.mailboxId, t.gmailMessageId, t.workspaceId),
    index('messages_lease_idx').on(t.leaseExpiresAt).where(sql`${t.status} = 'sending'`),
    index('messages_workspace_rfc822_idx').on(t.workspaceId, t.rfc822MessageId),
    index('messages_mailbox_at_idx').on(t.mailboxId, t.direction, t.at),
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
  (t) => [primaryKey({ columns: [t.messageId, t.contactId, t.workspaceId] }), index('message_contacts_contact_idx').on(t.workspaceId, t.contactId)],
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
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('mail_events_source_unique').on(t.messageId, t.type, t.sourceGmailMessageId, sql`coalesce(${t.recipient}, '')`, t.workspaceId),
    index('mail_events_recipient_idx').on(t.workspaceId, sql`lower(${t.recipient})`, t.type, t.at),
  ],
);

/* ---------------------------------------------------------- Suppression */

export const suppressionReasonEnum = pgEnum('suppression_reason', ['unsubscribe', 'bounce', 'complaint', 'manual']);

/** Workspace-wide "never mail this address" (P-08). Checked inside every send's transaction. */
export const suppressions = pgTable(
  'suppressions',
  {
    id: id(),
    workspaceId: workspaceRef(),
    email: text('email').notNull(),
    /** `all`, or `topic:<name>` for a topic opt-out from the preference center. */
    scope: text('scope').notNull().default('all'),
    reason: suppressionReasonEnum('reason').notNull(),
    source: text('source'),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('suppressions_workspace_email_scope_unique').on(t.workspaceId, sql`lower(${t.email})`, t.scope)],
);

export type MailboxStatus = (typeof mailboxStatusEnum.enumValues)[number];

/** Consumed OAuth `state` ids: a state is accepted once (replayed callbacks are refused). */
export const usedOauthStates = pgTable('used_oauth_states', {
  stateId: text('state_id').primaryKey(),
  usedAt: timestamp('used_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Login and signup attempts, counted per account and per client address across every
 * process. `subject` is a SHA-256 of `account:<email>` or `address:<ip>`, never the value;
 * rows older than the longest window are deleted as new ones arrive.
 */
export const authAttempts = pgTable(
  'auth_attempts',
  {
    id: id(),
    kind: text('kind').notNull(),
    subject: text('subject').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('auth_attempts_kind_subject_at_idx').on(t.kind, t.subject, t.at), index('auth_attempts_at_idx').on(t.at)],
);

/** A signup waiting for its address to be proven: nothing exists until the mailed link is used. */
export const signupRequests = pgTable(
  'signup_requests',
  {
    id: id(),
    email: text('email').notNull(),
    name: text('name'),
    workspaceName: text('workspace_name').notNull(),
    passwordHash: text('password_hash').notNull(),
    tokenHash: text('token_hash').notNull().unique(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('signup_requests_expires_at_idx').on(t.expiresAt)],
);

/* ------------------------------------------------------------ Campaigns */

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
  },
  (t) => [index('campaigns_workspace_idx').on(t.workspaceId, t.createdAt)],
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
    uniqueIndex('campaign_sends_campaign_step_recipient_unique').on(t.campaignId, t.step, t.recipientId, t.workspaceId),
    index('campaign_sends_lease_idx').on(t.leaseExpiresAt).where(sql`${t.status} = 'sending'`),
    index('campaign_sends_due_idx').on(t.status, t.dueAt),
    index('campaign_sends_campaign_status_idx').on(t.campaignId, t.status),
  ],
);

/* ------------------------------------------------------------- Tracking */

export const trackingEventTypeEnum = pgEnum('tracking_event_type', ['open', 'click']);
export const classificationEnum = pgEnum('hit_classification', ['human', 'machine', 'unknown']);

/** Raw opens and clicks, each classified with its reasons. IP and user agent are dropped after the retention window (P-14). */
export const trackingEvents = pgTable(
  'tracking_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    workspaceId: uuid('workspace_id').notNull(),
    campaignId: uuid('campaign_id').notNull(),
    sendId: uuid('send_id').notNull(),
    type: trackingEventTypeEnum('type').notNull(),
    linkIndex: integer('link_index'),
    at: timestamp('at', { withTimezone: true }).notNull(),
    method: text('method').notNull(),
    ip: text('ip'),
    userAgent: text('user_agent'),
    classification: classificationEnum('classification').notNull(),
    reasons: text('reasons').array().notNull(),
  },
  (t) => [
    index('tracking_events_campaign_idx').on(t.campaignId, t.type, t.at),
    index('tracking_events_send_idx').on(t.sendId, t.at),
    // The P-14 sweep reads only events that still hold raw facts.
    index('tracking_events_raw_facts_at_idx')
      .on(t.at)
      .where(sql`${t.userAgent} is not null or (${t.ip} is not null and position('/' in ${t.ip}) = 0)`),
  ],
);

/**
 * Campaign stats, kept by the event writer in the transaction that inserts the events
 * (src/tracking/rollups.ts). One row per campaign, type and link; link_index -1 is every
 * link together. Counts are judged verdicts (the human-click upgrade included).
 */
export const trackingRollups = pgTable(
  'tracking_rollups',
  {
    workspaceId: uuid('workspace_id').notNull(),
    campaignId: uuid('campaign_id')
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    type: trackingEventTypeEnum('type').notNull(),
    linkIndex: integer('link_index').notNull(),
    human: bigint('human', { mode: 'number' }).notNull().default(0),
    machine: bigint('machine', { mode: 'number' }).notNull().default(0),
    unknown: bigint('unknown', { mode: 'number' }).notNull().default(0),
    uniqueHuman: bigint('unique_human', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ name: 'tracking_rollups_pk', columns: [t.campaignId, t.type, t.linkIndex, t.workspaceId] })],
);

/** Judged-human events per recipient, campaign, type and link: a row leaving 0 is one more unique human. */
export const trackingRecipientRollups = pgTable(
  'tracking_recipient_rollups',
  {
    workspaceId: uuid('workspace_id').notNull(),
    // No foreign key: checked per inserted row, it would lock the campaign row hundreds of times a batch.
    campaignId: uuid('campaign_id').notNull(),
    recipientId: uuid('recipient_id').notNull(),
    type: trackingEventTypeEnum('type').notNull(),
    linkIndex: integer('link_index').notNull(),
    humanEvents: integer('human_events').notNull().default(0),
  },
  (t) => [primaryKey({ name: 'tracking_recipient_rollups_pk', columns: [t.campaignId, t.recipientId, t.type, t.linkIndex, t.workspaceId] })],
);

/** Per send with a human event: what the "a human click upgrades the latest earlier open" rule needs. */
export const trackingSendRollups = pgTable(
  'tracking_send_rollups',
  {
    sendId: uuid('send_id').notNull(),
    workspaceId: uuid('workspace_id').notNull(),
    campaignId: uuid('campaign_id').notNull(),
    recipientId: uuid('recipient_id').notNull(),
    firstHumanClickAt: timestamp('first_human_click_at', { withTimezone: true }),
    firstHumanOpenAt: timestamp('first_human_open_at', { withTimezone: true }),
    upgradedClass: classificationEnum('upgraded_class'),
  },
  (t) => [primaryKey({ name: 'tracking_send_rollups_pk', columns: [t.sendId, t.workspaceId] })],
);

/* ---------------------------------------------------------------- Audit */

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
    at: timestamp('at', { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
  },
  (t) => [index('audit_log_workspace_at_idx').on(t.workspaceId, t.at)],
);

/* ---------------------------------------------------------------- Limits shared by processes */

/**
 * Invariant 10: one row per mailbox shared by every process. Its quota and sends-per-minute
 * buckets, daily-budget headroom and rate-limit pause are changed only by the
 * `mailbox_take_units` function (migration 0006) and gmail/limit-store.ts; `sync_*` is the
 * lease of the one sync that may run for the mailbox.
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
  pausedUntil: timestamp('paused_until', { withTimezone: true }),
  syncOwner: text('sync_owner'),
  syncLeaseUntil: timestamp('sync_lease_until', { withTimezone: true }),
  syncStartedAt: timestamp('sync_started_at', { withTimezone: true }),
  syncRequestedAt: timestamp('sync_requested_at', { withTimezone: true }),
});

/** Periodic jobs: a process runs one only after moving `next_run_at` past now in one statement, so each runs once per period across processes. */
export const jobSchedule = pgTable('job_schedule', {
  name: text('name').primaryKey(),
  nextRunAt: timestamp('next_run_at', { withTimezone: true }).notNull(),
  lastOwner: text('last_owner'),
  lastStartedAt: timestamp('last_started_at', { withTimezone: true }),
  runCount: integer('run_count').notNull().default(0),
});
