import { timestamp, uuid } from 'drizzle-orm/pg-core';

/** Random ids: never guessed, never enumerated. */
export const id = () => uuid('id').primaryKey().defaultRandom();
export const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
