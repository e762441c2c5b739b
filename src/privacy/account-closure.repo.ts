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
     * Of the workspaces the user owns, those with no other live owner: they close with the
     * account. The workspaces are locked first (in id order), so two co-owners closing at
     * the same moment cannot each leave the workspace to the other.
     */
    async soleOwnedWorkspaces(userId: string): Promise<string[]> {
      await db.execute(sql`
        select w.id from workspaces w join memberships m on m.workspace_id = w.id
        where m.user_id = ${userId}::uuid and m.role = 'owner' and w.deleted_at is null
        order by w.id for update of w`);
      return rowsOf<{ workspace_id: string }>(
        await db.execute(sql`
          select m.workspace_id from memberships m join workspaces w on w.id = m.workspace_id
          where m.user_id = ${userId}::uuid and m.role = 'owner' and w.deleted_at is null
            and not exists (
              select 1 from memberships o join users u on u.id = o.user_id
              where o.workspace_id = m.workspace_id and o.role = 'owner' and o.user_id <> m.user_id and u.deleted_at is null)
          order by m.workspace_id`),
      ).map((r) => String(r.workspace_id));
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
