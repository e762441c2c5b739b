import { and, asc, eq, gte, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { mailboxes, messages, usedOauthStates } from '../db/schema.js';
import { recordMailboxNeedsReconnect } from '../webhooks/facts.js';

export type MailboxRow = typeof mailboxes.$inferSelect;
export type NewMailbox = typeof mailboxes.$inferInsert;

function mailboxQueries(db: Db) {
  return {
    async findById(workspaceId: string, id: string): Promise<MailboxRow | undefined> {
      const [row] = await db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id)))
        .limit(1);
      return row;
    },

    /** For background work (sync, push) that starts from a mailbox id or address, not from a user. */
    async findByIdUnscoped(id: string): Promise<MailboxRow | undefined> {
      const [row] = await db.select().from(mailboxes).where(eq(mailboxes.id, id)).limit(1);
      return row;
    },

    /**
     * Locks the row until the transaction ends. Inserting a message that references the
     * mailbox waits on this lock (and fails once the row is gone), so a sync running while
     * the mailbox is disconnected cannot leave synced rows behind.
     */
    async lockById(workspaceId: string, id: string): Promise<boolean> {
      const rows = await db
        .select({ id: mailboxes.id })
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id)))
        .for('update');
      return rows.length > 0;
    },

    async findByEmailUnscoped(email: string): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).where(eq(sql`lower(${mailboxes.email})`, email.toLowerCase()));
    },

    async findByEmail(workspaceId: string, email: string): Promise<MailboxRow | undefined> {
      const [row] = await db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(sql`lower(${mailboxes.email})`, email.toLowerCase())))
        .for('update')
        .limit(1);
      return row;
    },

    async list(workspaceId: string): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).where(eq(mailboxes.workspaceId, workspaceId)).orderBy(asc(mailboxes.createdAt));
    },

    /** Every mailbox of every workspace: for key rotation, which is not a tenant's action. */
    async listAll(): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).orderBy(asc(mailboxes.createdAt));
    },

    async listSyncing(): Promise<MailboxRow[]> {
      return db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.syncEnabled, true), eq(mailboxes.status, 'active')));
    },

    async insert(values: NewMailbox): Promise<MailboxRow> {
      const [row] = await db.insert(mailboxes).values(values).returning();
      return row!;
    },

    /** active → needs_reconnect once (a second caller changes nothing), with its webhook event, in one transaction. */
    async markNeedsReconnect(id: string, values: Partial<NewMailbox>): Promise<MailboxRow | undefined> {
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        const [row] = await tx
          .update(mailboxes)
          .set({ ...values, status: 'needs_reconnect' })
          .where(and(eq(mailboxes.id, id), eq(mailboxes.status, 'active')))
          .returning();
        if (row) await recordMailboxNeedsReconnect(tx, row);
        return row;
      });
    },

    async update(id: string, values: Partial<NewMailbox>): Promise<MailboxRow | undefined> {
      const [row] = await db.update(mailboxes).set(values).where(eq(mailboxes.id, id)).returning();
      return row;
    },

    async delete(workspaceId: string, id: string): Promise<void> {
      await db.delete(mailboxes).where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id)));
    },

    /** Messages this mailbox sent in the last 24 hours: Gmail's daily limit is a rolling window. */
    async countSentSince(mailboxId: string, since: Date, atMost?: number): Promise<number> {
      // With `atMost` the count stops there: "is any budget left" never scans more than the budget.
      const sent = db
        .select({ one: sql`1` })
        .from(messages)
        .where(and(eq(messages.mailboxId, mailboxId), eq(messages.direction, 'outbound'), sql`${messages.status} in ('sending','sent')`, gte(messages.at, since)));
      const [row] = await db.select({ n: sql<number>`count(*)::int` }).from((atMost === undefined ? sent : sent.limit(atMost)).as('sent'));
      return Number(row?.n ?? 0);
    },

    /** Records a consumed OAuth state; false if it was consumed before (a replayed callback). */
    async consumeOauthState(stateId: string): Promise<boolean> {
      const inserted = await db.insert(usedOauthStates).values({ stateId }).onConflictDoNothing().returning();
      return inserted.length > 0;
    },

    /** Deletes what sync copied out of Gmail for this mailbox (P-06: disconnect deletes synced data). */
    async deleteSyncedMessages(mailboxId: string): Promise<number> {
      const deleted = await db
        .delete(messages)
        .where(and(eq(messages.mailboxId, mailboxId), eq(messages.synced, true)))
        .returning({ id: messages.id });
      return deleted.length;
    },
  };
}

export type MailboxQueries = ReturnType<typeof mailboxQueries>;

export function createMailboxesRepo(db: Db) {
  return { ...mailboxQueries(db), transaction: inTransaction(db, mailboxQueries) };
}

export type MailboxesRepo = ReturnType<typeof createMailboxesRepo>;
