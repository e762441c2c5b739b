import { and, asc, eq, gt, isNull, lte, sql, type SQL } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { auditLog, invitations, memberships, signupRequests, users, webSessions, workspaces, type Role } from '../db/schema.js';
import { revokeKeysOfMember } from '../api-keys/api-keys.repo.js';
import { revokeGrantsOfMember } from '../privacy/grants.repo.js';
import { disableEndpointsVouchedBy } from '../webhooks/webhooks.repo.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { ROLE_RANK } from './auth-common.js';
// Which membership of a person this is, for a session token to name (sessions.ts, claim `mbr`).
import { membershipStamp } from './member-lock.js';

export type UserRow = typeof users.$inferSelect;
export type WorkspaceRow = typeof workspaces.$inferSelect;
export type InvitationRow = typeof invitations.$inferSelect;

/**
 * An invitation still stands only while its workspace is open and its inviter is still a member
 * ranked at least as high as the role it offers: a removed or demoted admin's invitations lead
 * nowhere (they could otherwise prepare a way back in).
 */
const rank = (role: SQL) => sql`(case ${role} ${sql.raw(Object.entries(ROLE_RANK).map(([name, n]) => `when '${name}' then ${n}`).join(' '))} end)`;
const invitationStillValid = sql`exists (select 1 from ${workspaces} w where w.id = ${invitations.workspaceId} and w.deleted_at is null)
  and exists (
    select 1 from ${memberships} m join ${users} u on u.id = m.user_id
    where m.workspace_id = ${invitations.workspaceId} and m.user_id = ${invitations.invitedBy} and u.deleted_at is null
      and ${rank(sql`m.role`)} >= ${rank(sql`${invitations.role}`)}
  )`;
export type SignupRequestRow = typeof signupRequests.$inferSelect;

/** last_active_at is precise to this much: finer would write the users row on every request. */
const ACTIVITY_GRANULARITY_MS = 3_600_000;

function authQueries(db: Db) {
  return {
    /** The connection these queries run on (inside `transaction`, the transaction): other features' writes that must commit with a membership change share it (a unit of work). */
    unitOfWork: db,

    async findUserByEmail(email: string): Promise<UserRow | undefined> {
      // A closed account (P-13) is gone for sign-in at once; its address may sign up again.
      const [row] = await db.select().from(users).where(and(eq(users.email, email), isNull(users.deletedAt))).limit(1);
      return row;
    },

    async findUserById(id: string): Promise<UserRow | undefined> {
      const [row] = await db.select().from(users).where(eq(users.id, id)).limit(1);
      return row;
    },

    async insertUser(values: { email: string; name: string | null; passwordHash: string }): Promise<UserRow> {
      const [row] = await db.insert(users).values(values).returning();
      return row!;
    },

    async updateUser(id: string, values: { name?: string | null; email?: string; passwordHash?: string; emailChangeRequestedAt?: Date | null }): Promise<UserRow | undefined> {
      const [row] = await db.update(users).set(values).where(eq(users.id, id)).returning();
      return row;
    },

    /**
     * Ends every session of the user (a password change; run in its transaction): the user's
     * session version rises by one, so every token and web session started at an earlier one is
     * refused from the commit on, on every instance, whatever its clock. The web session rows are
     * deleted too — dead already, this only clears them. Returns the new version (the caller's
     * next session is started at it) and how many rows went.
     */
    async endSessions(userId: string): Promise<{ sessionVersion: number; webSessions: number }> {
      const [row] = await db
        .update(users)
        .set({ sessionVersion: sql`${users.sessionVersion} + 1` })
        .where(eq(users.id, userId))
        .returning({ sessionVersion: users.sessionVersion });
      const ended = await db.delete(webSessions).where(eq(webSessions.userId, userId)).returning({ id: webSessions.id });
      return { sessionVersion: row!.sessionVersion, webSessions: ended.length };
    },

    recordAudit: (entry: AuditEntry) => recordAudit(db, entry),

    async insertWorkspace(name: string): Promise<WorkspaceRow> {
      const [row] = await db.insert(workspaces).values({ name }).returning();
      return row!;
    },

    /**
     * Names the workspace or sets its postal address. Clearing the address changes nothing
     * (undefined) while a marketing campaign is scheduled, sending or paused: its mail must
     * carry one (launch refuses marketing without it), and the next batch would go out bare.
     */
    async updateWorkspace(id: string, values: { name?: string; postalAddress?: string | null }): Promise<WorkspaceRow | undefined> {
      const clearing = 'postalAddress' in values && !values.postalAddress;
      const [row] = await db
        .update(workspaces)
        .set(values)
        .where(
          and(
            eq(workspaces.id, id),
            clearing
              ? sql`not exists (select 1 from campaigns c where c.workspace_id = ${id}::uuid and c.kind = 'marketing'
                  and c.status in ('scheduled', 'sending', 'paused') and c.deleted_at is null)`
              : undefined,
          ),
        )
        .returning();
      return row;
    },

    /** Resolves to the new membership's stamp (undefined when the person was a member already). */
    async insertMembership(workspaceId: string, userId: string, role: Role): Promise<string | undefined> {
      const [row] = await db.insert(memberships).values({ workspaceId, userId, role }).onConflictDoNothing().returning({ stamp: membershipStamp });
      return row?.stamp;
    },

    /** A live workspace. */
    async findWorkspace(id: string): Promise<WorkspaceRow | undefined> {
      const [row] = await db.select().from(workspaces).where(and(eq(workspaces.id, id), isNull(workspaces.deletedAt))).limit(1);
      return row;
    },

    /** A membership of a live user in a live workspace (closing either ends every access at once). */
    async findMembership(workspaceId: string, userId: string) {
      const [row] = await db
        .select({ role: memberships.role, createdAt: memberships.createdAt, stamp: membershipStamp, workspace: workspaces, sessionsNotBefore: users.sessionsNotBefore, sessionVersion: users.sessionVersion })
        .from(memberships)
        .innerJoin(workspaces, eq(workspaces.id, memberships.workspaceId))
        .innerJoin(users, eq(users.id, memberships.userId))
        .where(and(eq(memberships.workspaceId, workspaceId), eq(memberships.userId, userId), isNull(workspaces.deletedAt), isNull(users.deletedAt)))
        .limit(1);
      return row;
    },

    /**
     * P-15: the user was active (a login or an authenticated request). Written at most once
     * an hour per user (a login always), so a busy API does not rewrite the row on every
     * request. Any use cancels a pending inactivity warning.
     */
    async touchActivity(userId: string, at: Date, options: { login?: boolean } = {}): Promise<void> {
      const stale = new Date(at.getTime() - ACTIVITY_GRANULARITY_MS);
      await db
        .update(users)
        .set({ lastActiveAt: at, inactivityWarnedAt: null })
        .where(and(eq(users.id, userId), options.login ? undefined : lte(users.lastActiveAt, stale)));
    },

    /** The user's oldest membership: where a login lands when it names no workspace. */
    /** The user's row, locked until the transaction ends; false when the account is closed (or gone). */
    async lockLiveUser(userId: string): Promise<boolean> {
      const rows = await db.select({ id: users.id }).from(users).where(and(eq(users.id, userId), isNull(users.deletedAt))).for('update');
      return rows.length > 0;
    },

    async findFirstMembership(userId: string) {
      const [row] = await db
        .select({ workspaceId: memberships.workspaceId, stamp: membershipStamp })
        .from(memberships)
        .innerJoin(workspaces, eq(workspaces.id, memberships.workspaceId))
        .where(and(eq(memberships.userId, userId), isNull(workspaces.deletedAt)))
        .orderBy(asc(memberships.createdAt))
        .limit(1);
      return row;
    },

    /** The live workspaces a user belongs to, in the order they joined them. */
    async listWorkspacesOf(userId: string): Promise<{ workspaceId: string; name: string }[]> {
      return db
        .select({ workspaceId: workspaces.id, name: workspaces.name })
        .from(memberships)
        .innerJoin(workspaces, eq(workspaces.id, memberships.workspaceId))
        .where(and(eq(memberships.userId, userId), isNull(workspaces.deletedAt)))
        .orderBy(asc(memberships.createdAt), asc(workspaces.id));
    },

    async listMembers(workspaceId: string) {
      return db
        .select({ userId: users.id, email: users.email, name: users.name, role: memberships.role, since: memberships.createdAt })
        .from(memberships)
        .innerJoin(users, eq(users.id, memberships.userId))
        .where(and(eq(memberships.workspaceId, workspaceId), isNull(users.deletedAt)))
        .orderBy(asc(memberships.createdAt));
    },

    /**
     * The invitations the workspace made since `since`, and when the oldest of them was made (the
     * daily limit), under a lock of the workspace's row held to the end of the transaction, so
     * invitations made at once are counted one after another. Counted from the audit log's
     * `member.invited` rows (its index by workspace, action and time): a revoked invitation's
     * row is deleted, its audit row stays, and it counts.
     */
    async lockInvitationsSince(workspaceId: string, since: Date): Promise<{ count: number; oldest: Date | null }> {
      // `no key update`: inserts naming the workspace (their foreign keys' key share) do not wait for it.
      await db.select({ id: workspaces.id }).from(workspaces).where(eq(workspaces.id, workspaceId)).for('no key update');
      const [row] = await db
        .select({ n: sql<number>`count(*)::int`, oldest: sql<string | null>`min(${auditLog.at})` })
        .from(auditLog)
        .where(and(eq(auditLog.workspaceId, workspaceId), eq(auditLog.action, 'member.invited'), gt(auditLog.at, since)));
      return { count: Number(row?.n ?? 0), oldest: row?.oldest ? new Date(row.oldest) : null };
    },

    async insertInvitation(values: typeof invitations.$inferInsert): Promise<InvitationRow> {
      const [row] = await db.insert(invitations).values(values).returning();
      return row!;
    },

    async listPendingInvitations(workspaceId: string, now: Date): Promise<InvitationRow[]> {
      return db
        .select()
        .from(invitations)
        .where(and(eq(invitations.workspaceId, workspaceId), isNull(invitations.acceptedAt), gt(invitations.expiresAt, now), invitationStillValid))
        .orderBy(asc(invitations.createdAt));
    },

    /**
     * The invitation of this token (`by: 'token'`) or id, if not accepted and not expired; with
     * `lock`, locked so that two accepts of one invitation cannot both succeed.
     */
    async findUsableInvitation(by: { tokenHash: string } | { id: string }, now: Date, lock = false): Promise<InvitationRow | undefined> {
      const which = 'id' in by ? eq(invitations.id, by.id) : eq(invitations.tokenHash, by.tokenHash);
      const query = db
        .select()
        .from(invitations)
        .where(and(which, isNull(invitations.acceptedAt), gt(invitations.expiresAt, now), invitationStillValid))
        .limit(1);
      const [row] = lock ? await query.for('update', { of: invitations }) : await query;
      return row;
    },

    /**
     * Stores a new pending acceptance of this invitation in place of any older one (whose code
     * then no longer works), unless one made after `mailedAfter` waits: false, nothing changed.
     * Under the invitation's row lock, so accepts arriving together store (and mail) one.
     */
    async replaceSignupRequestOfInvitation(request: typeof signupRequests.$inferInsert & { invitationId: string }, mailedAfter: Date): Promise<boolean> {
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        await tx.select({ id: invitations.id }).from(invitations).where(eq(invitations.id, request.invitationId)).for('update');
        const [recent] = await tx
          .select({ id: signupRequests.id })
          .from(signupRequests)
          .where(and(eq(signupRequests.invitationId, request.invitationId), gt(signupRequests.createdAt, mailedAfter)))
          .limit(1);
        if (recent) return false;
        await tx.delete(signupRequests).where(eq(signupRequests.invitationId, request.invitationId));
        await tx.insert(signupRequests).values(request);
        return true;
      });
    },

    async markInvitationAccepted(id: string, at: Date): Promise<void> {
      await db.update(invitations).set({ acceptedAt: at }).where(eq(invitations.id, id));
    },

    async insertSignupRequest(values: typeof signupRequests.$inferInsert): Promise<void> {
      await db.insert(signupRequests).values(values);
    },

    /** Takes the pending signup for this code (deleting it: a code works once), if it has not expired. */
    async takeSignupRequest(tokenHash: string, now: Date): Promise<SignupRequestRow | undefined> {
      const [row] = await db
        .delete(signupRequests)
        .where(and(eq(signupRequests.tokenHash, tokenHash), gt(signupRequests.expiresAt, now)))
        .returning();
      return row;
    },

    async deleteExpiredSignupRequests(now: Date): Promise<void> {
      await db.delete(signupRequests).where(lte(signupRequests.expiresAt, now));
    },

    /**
     * Every membership of the workspace, locked until the transaction ends, so role changes and
     * removals serialize (the last owner stays). Locks the workspace first, then its memberships; `live`: the
     * member's account is not closed. The workspace row is what account closure locks
     * (account-closure.repo.ts), so a co-owner closing their account and a change here take
     * turns; the memberships are read after that lock, in a statement of their own, so a
     * closure that committed meanwhile is seen.
     */
    async lockMemberships(workspaceId: string): Promise<{ userId: string; role: Role; live: boolean }[]> {
      await db.select({ id: workspaces.id }).from(workspaces).where(eq(workspaces.id, workspaceId)).for('update');
      return db
        .select({ userId: memberships.userId, role: memberships.role, live: sql<boolean>`${users.deletedAt} is null` })
        .from(memberships)
        .innerJoin(users, eq(users.id, memberships.userId))
        .where(eq(memberships.workspaceId, workspaceId))
        .for('update', { of: memberships });
    },

    async updateRole(workspaceId: string, userId: string, role: Role): Promise<void> {
      await db.update(memberships).set({ role }).where(and(eq(memberships.workspaceId, workspaceId), eq(memberships.userId, userId)));
    },

    /**
     * The membership and the person's browser sessions in that workspace: a session is re-checked
     * against the membership on every request, so without a membership it is refused anyway, but
     * invited back, the person would get every old session back (a lost laptop's, a stolen cookie)
     * — they bring none back, as with their API keys.
     */
    async deleteMembership(workspaceId: string, userId: string): Promise<void> {
      await db.delete(memberships).where(and(eq(memberships.workspaceId, workspaceId), eq(memberships.userId, userId)));
      await db.delete(webSessions).where(and(eq(webSessions.workspaceId, workspaceId), eq(webSessions.userId, userId)));
    },

    /** A removed member's API keys go with the membership (api-keys.repo.ts); resolves to the keys revoked. */
    revokeApiKeysOf(workspaceId: string, userId: string, at: Date): Promise<string[]> {
      return revokeKeysOfMember(db, workspaceId, userId, at);
    },

    /** And the access grants they received or gave (privacy/grants.repo.ts); resolves to the grants revoked. */
    revokeGrantsOf(workspaceId: string, userId: string, at: Date) {
      return revokeGrantsOfMember(db, workspaceId, userId, at);
    },

    /** A removed member's webhook endpoints are turned off with the membership (webhooks.repo.ts); resolves to their ids. */
    disableWebhooksOf(workspaceId: string, userId: string, at: Date): Promise<string[]> {
      return disableEndpointsVouchedBy(db, workspaceId, userId, at);
    },

    /** Membership changes are evidence (issue 11): written in the transaction that makes them. */
    async audit(entry: AuditEntry): Promise<void> {
      await recordAudit(db, entry);
    },

    async deleteInvitation(workspaceId: string, id: string): Promise<boolean> {
      const deleted = await db
        .delete(invitations)
        .where(and(eq(invitations.workspaceId, workspaceId), eq(invitations.id, id), isNull(invitations.acceptedAt)))
        .returning({ id: invitations.id });
      return deleted.length > 0;
    },
  };
}

export type AuthQueries = ReturnType<typeof authQueries>;

/** The queries, plus `transaction` to run several of them atomically. */
export function createAuthRepo(db: Db) {
  return { ...authQueries(db), transaction: inTransaction(db, authQueries) };
}

export type AuthRepo = ReturnType<typeof createAuthRepo>;
