import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { memberships, users, workspaces, type Role } from '../db/schema.js';

/**
 * A membership's stamp: its `created_at` in microseconds as text, exactly as stored (exact on
 * PostgreSQL ≥ 14; a JS Date drops the microseconds). Removed and invited back, a person has
 * another membership with another stamp; sessions and connections started in the first name its
 * stamp and end with it. Only ever compared for equality, never as a time.
 */
export const membershipStamp = sql<string>`(extract(epoch from ${memberships.createdAt}) * 1000000)::bigint::text`;

export interface LockedMember {
  userId: string;
  role: Role;
  sessionVersion: number;
  sessionsNotBefore: Date | null;
  /** The membership's stamp (membershipStamp). */
  membership: string;
}

/**
 * Members of a live workspace with live accounts, among `userIds`, their membership and user rows
 * locked (for share) until the caller's transaction ends. Something a member makes that must not
 * outlive their membership (a mailbox, an API key, an access grant) is written under this lock: a
 * removal, a closure or a password change either came first and the member is missing here, or
 * it waits for the write and then finds it (and revokes it). Checked only before the transaction,
 * a key made while its creator was being removed survived the removal (an attacker's finding).
 * The workspace row is locked first, as every membership change and a closure lock it
 * (auth.repo.ts lockMemberships, account-closure.repo.ts); taken after the membership, it
 * deadlocked with a removal that had the workspace already.
 */
export async function lockLiveMembers(db: Db, workspaceId: string, userIds: readonly string[]): Promise<LockedMember[]> {
  if (userIds.length === 0) return [];
  await db.select({ id: workspaces.id }).from(workspaces).where(eq(workspaces.id, workspaceId)).for('key share');
  return db
    .select({ userId: memberships.userId, role: memberships.role, sessionVersion: users.sessionVersion, sessionsNotBefore: users.sessionsNotBefore, membership: membershipStamp })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .innerJoin(workspaces, eq(workspaces.id, memberships.workspaceId))
    .where(and(eq(memberships.workspaceId, workspaceId), inArray(memberships.userId, [...userIds]), isNull(users.deletedAt), isNull(workspaces.deletedAt)))
    .orderBy(memberships.userId)
    .for('share', { of: [memberships, users] });
}

/** Whether this user is still an owner or admin of the workspace (live), locked as lockLiveMembers does. */
export async function lockLiveManager(db: Db, workspaceId: string, userId: string): Promise<boolean> {
  const [member] = await lockLiveMembers(db, workspaceId, [userId]);
  return member !== undefined && member.role !== 'member';
}
