import { and, desc, eq, isNull, lt, or } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { apiKeys, type ApiKeyRow } from '../db/schema.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { lockLiveManager } from '../auth/member-lock.js';

/**
 * Revokes every live key a member created in a workspace, in the caller's transaction (the
 * member's removal, auth.service.ts): a key acts for its creator only while they are a member,
 * and one left unrevoked would come back to life if they were invited again.
 */
export async function revokeKeysOfMember(db: Db, workspaceId: string, userId: string, at: Date): Promise<string[]> {
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: at })
    .where(and(eq(apiKeys.workspaceId, workspaceId), eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  return rows.map((r) => r.id);
}

export function createApiKeysRepo(db: Db) {
  return {
    /**
     * The key row and its audit entry commit together (the audit names the new key's id), while
     * its creator is still an owner or admin, checked under their membership's lock
     * (member-lock.ts): a removal revokes the member's keys, and one made while it ran survived
     * it. Undefined when the creator no longer may.
     */
    async insert(values: { workspaceId: string; createdBy: string; name: string; scopes: string[]; keyHash: string; keyPrefix: string }, audit: (id: string) => AuditEntry): Promise<ApiKeyRow | undefined> {
      return db.transaction(async (tx) => {
        if (!(await lockLiveManager(tx, values.workspaceId, values.createdBy))) return undefined;
        const [row] = await tx.insert(apiKeys).values(values).returning();
        await recordAudit(tx, audit(row!.id));
        return row!;
      });
    },

    list(workspaceId: string): Promise<ApiKeyRow[]> {
      return db.select().from(apiKeys).where(eq(apiKeys.workspaceId, workspaceId)).orderBy(desc(apiKeys.createdAt));
    },

    async findById(id: string): Promise<ApiKeyRow | undefined> {
      const [row] = await db.select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
      return row;
    },

    async findByHash(keyHash: string): Promise<ApiKeyRow | undefined> {
      const [row] = await db.select().from(apiKeys).where(eq(apiKeys.keyHash, keyHash)).limit(1);
      return row;
    },

    /** Revokes a live key of this workspace; undefined when there is none (unknown, another workspace's, already revoked). */
    async revoke(workspaceId: string, id: string, at: Date, audit: AuditEntry): Promise<ApiKeyRow | undefined> {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .update(apiKeys)
          .set({ revokedAt: at })
          .where(and(eq(apiKeys.workspaceId, workspaceId), eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
          .returning();
        if (row) await recordAudit(tx, audit);
        return row;
      });
    },

    /** Moves last_used_at only when it is older than `staleBefore`: at most one write per key per interval, whatever the process. */
    async touch(id: string, at: Date, staleBefore: Date): Promise<void> {
      await db
        .update(apiKeys)
        .set({ lastUsedAt: at })
        .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, staleBefore))));
    },
  };
}

export type ApiKeysRepo = ReturnType<typeof createApiKeysRepo>;
