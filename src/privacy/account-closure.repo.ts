import { sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { recordAudit, type AuditEntry } from './audit.js';

/** What account closure (and the inactivity sweep that closes accounts) reads and writes. */
function closureQueries(db: Db) {
  return {
    async findLiveUser(userId: string): Promise<{ id: string; email: string; passwordHash: string } | undefined> {
      const [row] = rowsOf<{ id: string; email: string; password_hash: string }>(
        await db.execute(sql`select id, email, password_hash from users where id = ${userId}::uuid and deleted_at is null`),
      );
      return row && { id: String(row.id), email: String(row.email), passwordHash: String(row.password_hash) };
    },

    /** The live workspaces the user belongs to, with their role in each. */
    async memberships(userId: string): Promise<{ workspaceId: string; role: string }[]> {
      return rowsOf<{ workspace_id: string; role: string }>(
        await db.execute(sql`
          select m.workspace_id, m.role::text as role from memberships m join workspaces w on w.id = m.workspace_id
          where m.user_id = ${userId}::uuid and w.deleted_at is null order by m.workspace_id`),
      ).map((r) => ({ workspaceId: String(r.workspace_id), role: String(r.role) }));
    },

    /**
     * Of the workspaces the user owns, those with no other live owner, each with its successor:
     * the other live member who would own it (the highest role, then the longest a member), or
     * none when nobody else uses it. The user's workspaces are locked first (in id order), so
     * two co-owners closing at the same moment cannot each leave the workspace to the other, a
     * member joining meanwhile waits, and a successor closing their own account meanwhile is
     * either seen closed or closes after the handover (then as the workspace's owner).
     */
    async soleOwnedWorkspaces(userId: string): Promise<{ workspaceId: string; name: string; successorId: string | null; successorRole: string | null }[]> {
      // Every workspace the user belongs to, not only those they own: a member closing at the same
      // moment as an owner who would hand them the workspace takes turns with that handover (one
      // sees the other committed: never an owner who is already closed).
      await db.execute(sql`
        select w.id from workspaces w join memberships m on m.workspace_id = w.id
        where m.user_id = ${userId}::uuid and w.deleted_at is null
        order by w.id for update of w`);
      return rowsOf<{ workspace_id: string; name: string; successor_id: string | null; successor_role: string | null }>(
        await db.execute(sql`
          select m.workspace_id, w.name, s.user_id as successor_id, s.role::text as successor_role
          from memberships m join workspaces w on w.id = m.workspace_id
          left join lateral (
            select o.user_id, o.role from memberships o join users u on u.id = o.user_id
            where o.workspace_id = m.workspace_id and o.user_id <> m.user_id and u.deleted_at is null
            order by case o.role when 'owner' then 0 when 'admin' then 1 else 2 end, o.created_at, o.user_id limit 1
          ) s on true
          where m.user_id = ${userId}::uuid and m.role = 'owner' and w.deleted_at is null
            and not exists (
              select 1 from memberships o join users u on u.id = o.user_id
              where o.workspace_id = m.workspace_id and o.role = 'owner' and o.user_id <> m.user_id and u.deleted_at is null)
          order by m.workspace_id`),
      ).map((r) => ({
        workspaceId: String(r.workspace_id),
        name: String(r.name),
        successorId: r.successor_id === null ? null : String(r.successor_id),
        successorRole: r.successor_role === null ? null : String(r.successor_role),
      }));
    },

    /** Makes a member the workspace's owner (an inactive sole owner's successor). */
    async makeOwner(workspaceId: string, userId: string): Promise<void> {
      await db.execute(sql`update memberships set role = 'owner' where workspace_id = ${workspaceId}::uuid and user_id = ${userId}::uuid`);
    },

    /** Marks the account closed: every session issued before `at` is refused from now on. */
    async closeUser(userId: string, at: Date, purgeAfter: Date): Promise<boolean> {
      const rows = rowsOf(
        await db.execute(sql`
          update users set deleted_at = ${at.toISOString()}::timestamptz, purge_after = ${purgeAfter.toISOString()}::timestamptz,
            sessions_not_before = ${at.toISOString()}::timestamptz
          where id = ${userId}::uuid and deleted_at is null returning id`),
      );
      return rows.length > 0;
    },

    async closeWorkspace(workspaceId: string, at: Date, purgeAfter: Date): Promise<void> {
      await db.execute(sql`
        update workspaces set deleted_at = ${at.toISOString()}::timestamptz, purge_after = ${purgeAfter.toISOString()}::timestamptz
        where id = ${workspaceId}::uuid and deleted_at is null`);
    },

    audit: (entry: AuditEntry) => recordAudit(db, entry),
  };
}

export function createAccountClosureRepo(db: Db) {
  return { ...closureQueries(db), transaction: inTransaction(db, closureQueries) };
}

export type AccountClosureRepo = ReturnType<typeof createAccountClosureRepo>;
