import { sql } from 'drizzle-orm';
import { bigint, index, integer, pgEnum, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { campaigns } from './campaigns.js';

/** Tracking events and the rollups the campaign stats read. */

export const trackingEventTypeEnum = pgEnum('tracking_event_type', ['open', 'click']);
export const classificationEnum = pgEnum('hit_classification', ['human', 'machine', 'unknown']);

/**
 * Raw opens and clicks, each classified with its reasons. IP and user agent are dropped after the retention window (P-14).
 * Partitioned by month of `at` in SQL (migration 0018; Drizzle does not model partitioning, see src/tracking/RETENTION-AND-PARTITIONS.md),
 * hence the primary key (id, at): the time is fixed when the hit is answered, the id when its batch is first prepared (a retried batch keeps both).
 */
export const trackingEvents = pgTable(
  'tracking_events',
  {
    id: uuid('id').notNull().defaultRandom(),
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
    primaryKey({ name: 'tracking_events_id_at_pk', columns: [t.id, t.at] }),
    index('tracking_events_campaign_idx').on(t.campaignId, t.type, t.at),
    index('tracking_events_send_idx').on(t.sendId, t.at),
    // The P-14 sweep reads only events that still hold raw facts.
    index('tracking_events_raw_facts_at_idx')
      .on(t.at)
      .where(sql`${t.userAgent} is not null or (${t.ip} is not null and position('/' in ${t.ip}) = 0)`),
  ],
);

/**
 * Campaign stats, kept by the rollup pass after the events are written (src/tracking/rollups.ts,
 * rollups.repo.ts; they lag the events by about one pass). One row per campaign, type and link; link_index -1 is every
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
    // What the last pass added to human_events: its RETURNING then tells the count before and
    // after (a unique human more or less) without joining its input back (rollups.repo.ts).
    lastDelta: integer('last_delta').notNull().default(0),
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

/** Hits for recipients who refused tracking: a count per campaign and type, nothing about the hit itself. */
export const untrackedHitCounts = pgTable(
  'untracked_hit_counts',
  {
    workspaceId: uuid('workspace_id').notNull(),
    campaignId: uuid('campaign_id')
      .notNull()
      .references(() => campaigns.id, { onDelete: 'cascade' }),
    type: trackingEventTypeEnum('type').notNull(),
    hits: bigint('hits', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ name: 'untracked_hit_counts_pk', columns: [t.campaignId, t.type, t.workspaceId] })],
);

/**
 * Events written but not yet rolled up (migration 0022): one row per writer batch and campaign,
 * written in the statement that inserts the events, deleted by the rollup pass that counts them
 * (src/tracking/rollups.repo.ts). Arrays, one element per event actually inserted.
 */
export const trackingRollupPending = pgTable('tracking_rollup_pending', {
  id: bigint('id', { mode: 'number' }).notNull().generatedAlwaysAsIdentity(),
  workspaceId: uuid('workspace_id').notNull(),
  campaignId: uuid('campaign_id').notNull(),
  events: integer('events').notNull(),
  sendIds: uuid('send_ids').array().notNull(),
  at: timestamp('at', { withTimezone: true }).array().notNull(),
  types: trackingEventTypeEnum('types').array().notNull(),
  linkIndexes: integer('link_indexes').array().notNull(),
  classifications: classificationEnum('classifications').array().notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [primaryKey({ name: 'tracking_rollup_pending_pk', columns: [t.id, t.workspaceId] })]);
