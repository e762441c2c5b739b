import { and, desc, eq } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { legalRequests, mailboxes } from '../db/schema.js';
import { inUuidList } from '../db/sql-lists.js';
import { recordAudit, type AuditEntry } from './audit.js';

export type LegalRequestRow = typeof legalRequests.$inferSelect;
export type NewLegalRequest = typeof legalRequests.$inferInsert;

function legalRequestQueries(db: Db) {
  return {
    async insert(values: NewLegalRequest): Promise<LegalRequestRow> {
      const [row] = await db.insert(legalRequests).values(values).returning();
      return row!;
    },

    async findById(workspaceId: string, id: string): Promise<LegalRequestRow | undefined> {
      const [row] = await db
        .select()
        .from(legalRequests)
        .where(and(eq(legalRequests.workspaceId, workspaceId), eq(legalRequests.id, id)))
        .limit(1);
      return row;
    },

    async list(workspaceId: string): Promise<LegalRequestRow[]> {
      return db.select().from(legalRequests).where(eq(legalRequests.workspaceId, workspaceId)).orderBy(desc(legalRequests.createdAt));
    },

    /** The ids among `ids` that are not mailboxes of this workspace. */
    async missingMailboxes(workspaceId: string, ids: readonly string[]): Promise<string[]> {
      if (ids.length === 0) return [];
      const found = await db
        .select({ id: mailboxes.id })
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), inUuidList(mailboxes.id, ids)));
      const known = new Set(found.map((r) => r.id));
      return ids.filter((id) => !known.has(id));
    },

    async markDisclosed(workspaceId: string, id: string, at: Date): Promise<void> {
      await db
        .update(legalRequests)
        .set({ lastDisclosedAt: at })
        .where(and(eq(legalRequests.workspaceId, workspaceId), eq(legalRequests.id, id)));
    },

    recordAudit: (entry: AuditEntry) => recordAudit(db, entry),
  };
}

export function createLegalRequestsRepo(db: Db) {
  return { ...legalRequestQueries(db), transaction: inTransaction(db, legalRequestQueries) };
}

export type LegalRequestsRepo = ReturnType<typeof createLegalRequestsRepo>;
