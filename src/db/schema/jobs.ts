import { integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** Periodic jobs shared by every process. */

/** Periodic jobs: a process runs one only after moving `next_run_at` past now in one statement, so each runs once per period across processes. */
export const jobSchedule = pgTable('job_schedule', {
  name: text('name').primaryKey(),
  nextRunAt: timestamp('next_run_at', { withTimezone: true }).notNull(),
  lastOwner: text('last_owner'),
  lastStartedAt: timestamp('last_started_at', { withTimezone: true }),
  runCount: integer('run_count').notNull().default(0),
});
