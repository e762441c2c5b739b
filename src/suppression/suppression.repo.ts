import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { suppressions } from '../db/schema.js';

export type SuppressionReason = (typeof suppressions.$inferInsert)['reason'];

/**
 * The workspace's suppression list (P-08). `findSuppressed` is called inside the
 * transaction that claims a send, so a send and an opt-out cannot pass each other.
 */
export function createSuppressionRepo(db: Db) {
  return {
    /** Addresses (lowercased) among `emails` that must not be mailed. Topic scopes are for campaigns with that topic. */
    async findSuppressed(workspaceId: string, emails: string[], topic?: string): Promise<Set<string>> {
      if (emails.length === 0) return new Set();
      const scopes = topic ? ['all', `topic:${topic}`] : ['all'];
      const rows = await db
        .select({ email: sql<string>`lower(${suppressions.email})` })
        .from(suppressions)
        .where(
          and(
            eq(suppressions.workspaceId, workspaceId),
            inArray(sql`lower(${suppressions.email})`, emails.map((e) => e.toLowerCase())),
            inArray(suppressions.scope, scopes),
          ),
        );
      return new Set(rows.map((r) => r.email));
    },

    /** Idempotent: suppressing an address twice keeps the first entry. */
    async suppress(entry: { workspaceId: string; email: string; reason: SuppressionReason; source?: string; scope?: string; createdBy?: string }) {
      await db
        .insert(suppressions)
        .values({ ...entry, scope: entry.scope ?? 'all' })
        .onConflictDoNothing();
    },
  };
}

export type SuppressionRepo = ReturnType<typeof createSuppressionRepo>;
