import { and, desc, eq, gt, isNull, or } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { gmailAccessGrants, mailboxes, messages, type GmailAccessGrantRow } from '../db/schema.js';
import { recordAudit, type AuditEntry } from './audit.js';
import { lockLiveMembers } from '../auth/member-lock.js';

/**
 * A member leaving or removed: the access grants they received, and those they gave (they can no
 * longer revoke them), end with the membership — invited back, they bring none back (P-03).
 * Resolves to the grants revoked, for the caller's audit rows.
 */
export async function revokeGrantsOfMember(db: Db, workspaceId: string, userId: string, at: Date) {
  return db
    .update(gmailAccessGrants)
    .set({ revokedAt: at })
    .where(
      and(
        eq(gmailAccessGrants.workspaceId, workspaceId),
        or(eq(gmailAccessGrants.granteeUserId, userId), eq(gmailAccessGrants.grantedBy, userId)),
        isNull(gmailAccessGrants.revokedAt),
      ),
    )
    .returning({ id: gmailAccessGrants.id, messageId: gmailAccessGrants.messageId, granteeUserId: gmailAccessGrants.granteeUserId });
}

/** Access grants to Gmail content, and the facts the guard needs about a message. */
function grantQueries(db: Db) {
  return {
    /** A message of the workspace with the mailbox it lives in and who owns that mailbox (undefined: none, or no mailbox any more). */
    async findMessageWithOwner(workspaceId: string, messageId: string) {
      const [row] = await db
        .select({ messageId: messages.id, gmailMessageId: messages.gmailMessageId, mailboxId: mailboxes.id, ownerUserId: mailboxes.userId })
        .from(messages)
        .innerJoin(mailboxes, and(eq(mailboxes.id, messages.mailboxId), eq(mailboxes.workspaceId, messages.workspaceId)))
        .where(and(eq(messages.workspaceId, workspaceId), eq(messages.id, messageId)))
        .limit(1);
      return row;
    },

    /** Those of `userIds` who are live members of the workspace, locked until the transaction ends (auth/member-lock.ts). */
    lockMembers(workspaceId: string, userIds: string[]) {
      return lockLiveMembers(db, workspaceId, userIds);
    },

    async insert(values: typeof gmailAccessGrants.$inferInsert): Promise<GmailAccessGrantRow> {
      const [row] = await db.insert(gmailAccessGrants).values(values).returning();
      return row!;
    },

    async findById(workspaceId: string, id: string): Promise<GmailAccessGrantRow | undefined> {
      const [row] = await db
        .select()
        .from(gmailAccessGrants)
        .where(and(eq(gmailAccessGrants.workspaceId, workspaceId), eq(gmailAccessGrants.id, id)));
      return row;
    },

    /** The grant that lets `granteeUserId` read `messageId` at `at`: not revoked, not expired. */
    async findActive(workspaceId: string, messageId: string, granteeUserId: string, at: Date): Promise<GmailAccessGrantRow | undefined> {
      const [row] = await db
        .select()
        .from(gmailAccessGrants)
        .where(
          and(
            eq(gmailAccessGrants.workspaceId, workspaceId),
            eq(gmailAccessGrants.granteeUserId, granteeUserId),
            eq(gmailAccessGrants.messageId, messageId),
            isNull(gmailAccessGrants.revokedAt),
            gt(gmailAccessGrants.expiresAt, at),
          ),
        )
        .orderBy(desc(gmailAccessGrants.expiresAt))
        .limit(1);
      return row;
    },

    /** Grants a member gave or received, newest first. */
    async listForUser(workspaceId: string, userId: string, limit: number): Promise<GmailAccessGrantRow[]> {
      return db
        .select()
        .from(gmailAccessGrants)
        .where(and(eq(gmailAccessGrants.workspaceId, workspaceId), or(eq(gmailAccessGrants.grantedBy, userId), eq(gmailAccessGrants.granteeUserId, userId))))
        .orderBy(desc(gmailAccessGrants.createdAt), desc(gmailAccessGrants.id))
        .limit(limit);
    },

    /** The grants on one message that a member gave or received, newest first. */
    async listForMessage(workspaceId: string, messageId: string, userId: string): Promise<GmailAccessGrantRow[]> {
      return db
        .select()
        .from(gmailAccessGrants)
        .where(
          and(
            eq(gmailAccessGrants.workspaceId, workspaceId),
            eq(gmailAccessGrants.messageId, messageId),
            or(eq(gmailAccessGrants.grantedBy, userId), eq(gmailAccessGrants.granteeUserId, userId)),
          ),
        )
        .orderBy(desc(gmailAccessGrants.createdAt), desc(gmailAccessGrants.id));
    },

    /** Revokes a grant that is not revoked yet; undefined when it was already. */
    async revoke(workspaceId: string, id: string, revokedBy: string, at: Date): Promise<GmailAccessGrantRow | undefined> {
      const [row] = await db
        .update(gmailAccessGrants)
        .set({ revokedAt: at, revokedBy })
        .where(and(eq(gmailAccessGrants.workspaceId, workspaceId), eq(gmailAccessGrants.id, id), isNull(gmailAccessGrants.revokedAt)))
        .returning();
      return row;
    },

    async audit(entry: AuditEntry): Promise<void> {
      await recordAudit(db, entry);
    },
  };
}

/** The queries, plus `transaction` to run several of them atomically. */
export function createGrantsRepo(db: Db) {
  return { ...grantQueries(db), transaction: inTransaction(db, grantQueries) };
}

export type GrantsRepo = ReturnType<typeof createGrantsRepo>;
