import { sql } from 'drizzle-orm';
import { index, integer, pgEnum, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, createdAt } from './columns.js';

/** Workspaces, people and their sign-in: the tenant, users, memberships, invitations, sign-in throttles and pending signups. */

export const roleEnum = pgEnum('member_role', ['owner', 'admin', 'member']);

export const workspaces = pgTable('workspaces', {
  id: id(),
  name: text('name').notNull(),
  /** Printed in every marketing mail's footer (CAN-SPAM and friends); required to launch one. */
  postalAddress: text('postal_address'),
  createdAt: createdAt(),
  /** Closed with its sole owner's account: nobody gets in, everything is purged after `purgeAfter`. */
  deletedAt: timestamp('deleted_at', { withTimezone: true }),
  purgeAfter: timestamp('purge_after', { withTimezone: true }),
});

/** The owning workspace: deleting a workspace deletes everything it holds. */
export const workspaceRef = () =>
  uuid('workspace_id')
    .notNull()
    .references(() => workspaces.id, { onDelete: 'cascade' });

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
    /** Account closure: set with `purgeAfter`; the account is gone for every API at once. */
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
    purgeAfter: timestamp('purge_after', { withTimezone: true }),
    /** Sessions (JWTs) issued before this instant are refused: account closure logs out everywhere at once. */
    sessionsNotBefore: timestamp('sessions_not_before', { withTimezone: true }),
    /**
     * Raised by one on every password change: a session (token claim `sv`, web_sessions row)
     * started at another version has ended. A counter, not a time, so no clock decides it.
     */
    sessionVersion: integer('session_version').notNull().default(0),
    /** Last login or authenticated request (P-15: the inactivity horizon counts from here). */
    lastActiveAt: timestamp('last_active_at', { withTimezone: true }).notNull().defaultNow(),
    /** When the owner was mailed that the account will be purged for inactivity; a login clears it. */
    inactivityWarnedAt: timestamp('inactivity_warned_at', { withTimezone: true }),
    /**
     * When a new login address was last asked for (auth/profile.ts); the change it opened is
     * pending for as long as its code works, and confirming it clears this. Neither the new
     * address nor the code is kept: the code itself is the signed request.
     */
    emailChangeRequestedAt: timestamp('email_change_requested_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('users_email_unique').on(t.email).where(sql`${t.deletedAt} is null`),
    index('users_last_active_at_idx').on(t.lastActiveAt).where(sql`${t.deletedAt} is null`),
  ],
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

export type Role = (typeof roleEnum.enumValues)[number];

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

/**
 * A new account waiting for its address to be proven: nothing exists until the mailed code is
 * used. A signup names the workspace it creates; an invitation accepted by an address without an
 * account names the invitation instead (an invitation's token is handed to the inviter, so it
 * proves nothing about the address).
 */
export const signupRequests = pgTable(
  'signup_requests',
  {
    id: id(),
    email: text('email').notNull(),
    name: text('name'),
    workspaceName: text('workspace_name'),
    invitationId: uuid('invitation_id').references(() => invitations.id, { onDelete: 'cascade' }),
    passwordHash: text('password_hash').notNull(),
    tokenHash: text('token_hash').notNull().unique(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('signup_requests_expires_at_idx').on(t.expiresAt)],
);
