import { and, asc, desc, eq, gte, lt } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { mailboxes, policyVersions, type PolicyVersionRow } from '../db/schema.js';

export type Disclosure = PolicyVersionRow['disclosure'];

/** Published policy versions (global, append-only) and the versions members connected Gmail under. */
export function createPolicyVersionsRepo(db: Db) {
  return {
    async find(version: string): Promise<PolicyVersionRow | undefined> {
      const [row] = await db.select().from(policyVersions).where(eq(policyVersions.version, version));
      return row;
    },

    /** Publishes `version` unless it exists; true when this call published it. */
    async publishIfAbsent(values: { version: string; disclosure: Disclosure; publishedBy: string }): Promise<boolean> {
      const inserted = await db.insert(policyVersions).values(values).onConflictDoNothing().returning({ version: policyVersions.version });
      return inserted.length > 0;
    },

    async publishedBetween(from: Date, to: Date): Promise<PolicyVersionRow[]> {
      return db
        .select()
        .from(policyVersions)
        .where(and(gte(policyVersions.publishedAt, from), lt(policyVersions.publishedAt, to)))
        .orderBy(asc(policyVersions.publishedAt));
    },

    /** The policy version of each of a member's connected mailboxes, the latest connection first. */
    async versionsAcceptedBy(workspaceId: string, userId: string) {
      return db
        .select({ mailboxId: mailboxes.id, email: mailboxes.email, version: mailboxes.disclosureVersion, connectedAt: mailboxes.connectedAt })
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.userId, userId)))
        .orderBy(desc(mailboxes.connectedAt));
    },
  };
}

export type PolicyVersionsRepo = ReturnType<typeof createPolicyVersionsRepo>;
