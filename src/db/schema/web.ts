import { index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, id } from './columns.js';
import { users, workspaceRef } from './workspace.js';

/**
 * Browser sessions of the web app (src/web/). The cookie holds a random value; only its
 * SHA-256 is stored, so a copy of the table signs nobody in. Keyed by user as well, so
 * closing an account (or "sign out everywhere") deletes every session of that user.
 */
export const webSessions = pgTable(
  'web_sessions',
  {
    id: id(),
    workspaceId: workspaceRef(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    /** users.session_version when this session started: a password change since ends it. */
    sessionVersion: integer('session_version').notNull().default(0),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('web_sessions_token_hash_unique').on(t.tokenHash),
    index('web_sessions_user_idx').on(t.userId),
    index('web_sessions_expires_at_idx').on(t.expiresAt),
  ],
);
