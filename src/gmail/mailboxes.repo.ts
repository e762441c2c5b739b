import { and, asc, eq, isNotNull, isNull, ne, sql } from 'drizzle-orm';
import { releaseParkedSends } from '../campaigns/parked-sends.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { inTransaction, type Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { mailboxes, messages, usedOauthStates } from '../db/schema.js';
import { recordMailboxNeedsReconnect } from '../webhooks/facts.js';
import { lockLiveMembers, type LockedMember } from '../auth/member-lock.js';

export type MailboxRow = typeof mailboxes.$inferSelect;
export type NewMailbox = typeof mailboxes.$inferInsert;

/** A disconnected mailbox (P-13: marked, purged later) is gone for every query at once. */
const live = isNull(mailboxes.deletedAt);

function mailboxQueries(db: Db) {
  return {
    async findById(workspaceId: string, id: string): Promise<MailboxRow | undefined> {
      const [row] = await db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id), live))
        .limit(1);
      return row;
    },

    /**
     * The live mailbox of the workspace connected with the same Gmail address as `id`, which may
     * be disconnected (kept until its purge): a reconnect makes a new record, and what the old
     * one was doing (a campaign) can continue from it — the same Google account, its threads
     * and its replies.
     */
    async findLiveSameAddress(workspaceId: string, id: string): Promise<MailboxRow | undefined> {
      const [row] = rowsOf<{ id: string }>(
        await db.execute(sql`select o.id from mailboxes m
          join mailboxes o on lower(o.email) = lower(m.email) and o.workspace_id = m.workspace_id and o.deleted_at is null
          where m.id = ${id}::uuid and m.workspace_id = ${workspaceId}::uuid
          order by o.created_at desc limit 1`),
      );
      return row ? this.findById(workspaceId, row.id) : undefined;
    },

    /** For background work (sync, push) that starts from a mailbox id or address, not from a user. */
    async findByIdUnscoped(id: string): Promise<MailboxRow | undefined> {
      const [row] = await db.select().from(mailboxes).where(and(eq(mailboxes.id, id), live)).limit(1);
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
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id), live))
        .for('update');
      return rows.length > 0;
    },

    /** The member finishing a Gmail connection, if they still are one, locked until the transaction ends (auth/member-lock.ts). */
    async lockConnectingMember(workspaceId: string, userId: string): Promise<LockedMember | undefined> {
      const [member] = await lockLiveMembers(db, workspaceId, [userId]);
      return member;
    },

    async findByEmailUnscoped(email: string): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).where(and(eq(sql`lower(${mailboxes.email})`, email.toLowerCase()), live));
    },

    async findByEmail(workspaceId: string, email: string): Promise<MailboxRow | undefined> {
      const [row] = await db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(sql`lower(${mailboxes.email})`, email.toLowerCase()), live))
        .for('update')
        .limit(1);
      return row;
    },

    async list(workspaceId: string): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).where(and(eq(mailboxes.workspaceId, workspaceId), live)).orderBy(asc(mailboxes.createdAt));
    },

    /** Every mailbox of every workspace: for key rotation, which is not a tenant's action. */
    async listAll(): Promise<MailboxRow[]> {
      return db.select().from(mailboxes).where(live).orderBy(asc(mailboxes.createdAt));
    },

    async listSyncing(): Promise<MailboxRow[]> {
      return db
        .select()
        .from(mailboxes)
        .where(and(eq(mailboxes.syncEnabled, true), eq(mailboxes.status, 'active'), live));
    },

    async insert(values: NewMailbox): Promise<MailboxRow> {
      const [row] = await db.insert(mailboxes).values(values).returning();
      return row!;
    },

    /**
     * active → needs_reconnect once (a second caller changes nothing), with its webhook event, in
     * one transaction; only while the mailbox is live and still holds `grant` (the refresh token,
     * encrypted, that failed). Otherwise: 'stale' when it was disconnected or connected again with
     * a new grant since (that failure says nothing about the mailbox now), 'already' when another
     * caller marked it.
     */
    async markNeedsReconnect(id: string, grant: string, values: Partial<NewMailbox>): Promise<'marked' | 'already' | 'stale'> {
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        const [row] = await tx
          .update(mailboxes)
          .set({ ...values, status: 'needs_reconnect' })
          .where(and(eq(mailboxes.id, id), eq(mailboxes.status, 'active'), live, eq(mailboxes.refreshTokenEnc, grant)))
          .returning();
        if (row) {
          await recordMailboxNeedsReconnect(tx, row);
          return 'marked';
        }
        const [now] = await tx.select({ grant: mailboxes.refreshTokenEnc }).from(mailboxes).where(and(eq(mailboxes.id, id), live)).limit(1);
        return now && now.grant === grant ? 'already' : 'stale';
      });
    },

    /**
     * The mailbox can be searched again: the sends recovery parked while it could not are due
     * now (campaigns/parked-sends.ts). Right after the reconnect's transaction commits.
     */
    releaseParkedSends: (mailboxId: string, at: Date): Promise<number> => releaseParkedSends(db, mailboxId, at),

    async update(id: string, values: Partial<NewMailbox>): Promise<MailboxRow | undefined> {
      // Never a deleted one: a token refresh racing a disconnect must not write a token back.
      const [row] = await db.update(mailboxes).set(values).where(and(eq(mailboxes.id, id), live)).returning();
      return row;
    },

    /**
     * `update`, and `alsoInTransaction` (another store's writes that must go with it: the
     * pacer's headroom reset after a budget change) in the same transaction: both or neither.
     */
    async updateTogether(id: string, values: Partial<NewMailbox>, alsoInTransaction: (tx: Db) => Promise<void>): Promise<MailboxRow | undefined> {
      return db.transaction(async (txRaw) => {
        const row = await mailboxQueries(txRaw as unknown as Db).update(id, values);
        if (row) await alsoInTransaction(txRaw as unknown as Db);
        return row;
      });
    },

    /**
     * P-13: the mailbox is marked deleted and purged after `purgeAfter`; its tokens (already
     * revoked at Google) are wiped now, and nothing syncs or sends from it any more.
     */
    async markDeleted(workspaceId: string, id: string, at: Date, purgeAfter: Date, options: { revokeLater: boolean }): Promise<boolean> {
      const rows = await db
        .update(mailboxes)
        .set({
          deletedAt: at,
          purgeAfter,
          // Kept only while Google still has to be asked to revoke it (retryRevocations), for nothing else.
          refreshTokenEnc: options.revokeLater ? sql`${mailboxes.refreshTokenEnc}` : '',
          accessTokenEnc: null,
          accessTokenExpiresAt: null,
          syncEnabled: false,
          watchExpiresAt: null,
          historyId: null,
        })
        .where(and(eq(mailboxes.workspaceId, workspaceId), eq(mailboxes.id, id), live))
        .returning({ id: mailboxes.id });
      return rows.length > 0;
    },

    /** Disconnected mailboxes whose grant Google has not yet confirmed revoked: their refresh token is kept for that alone. */
    async listRevocationsPending(limit: number): Promise<MailboxRow[]> {
      return db
        .select()
        .from(mailboxes)
        .where(and(isNotNull(mailboxes.deletedAt), ne(mailboxes.refreshTokenEnc, '')))
        .orderBy(asc(mailboxes.deletedAt))
        .limit(limit);
    },

    /** The refresh token of a disconnected mailbox, wiped once Google revoked it (or it cannot be asked). */
    async wipeRefreshToken(id: string): Promise<boolean> {
      const rows = await db
        .update(mailboxes)
        .set({ refreshTokenEnc: '' })
        .where(and(eq(mailboxes.id, id), isNotNull(mailboxes.deletedAt), ne(mailboxes.refreshTokenEnc, '')))
        .returning({ id: mailboxes.id });
      return rows.length > 0;
    },

    /**
     * Every live mailbox a user connected (in any workspace), of a workspace (account closure
     * revokes them all), or of a user in one workspace (a member leaving it).
     */
    async listLiveOf(owner: { userId: string; workspaceId?: string } | { workspaceId: string }): Promise<MailboxRow[]> {
      const byUser = 'userId' in owner ? eq(mailboxes.userId, owner.userId) : undefined;
      const byWorkspace = owner.workspaceId !== undefined ? eq(mailboxes.workspaceId, owner.workspaceId) : undefined;
      return db.select().from(mailboxes).where(and(byUser, byWorkspace, live));
    },

    /**
     * What the workspace sent from the mailbox's address since `since` (the API's `sentToday`):
     * the outbound mail of this record and of its earlier ones in the workspace (disconnected and
     * connected again) that is or may be out, plus what a purge deleted meanwhile — the pacer's
     * rule (migration 0054's `mailbox_budget_used`), but never another workspace's sends.
     */
    async countSentSince(mailboxId: string, since: Date): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`select mailbox_budget_used(${mailboxId}::uuid, ${since.toISOString()}::timestamptz, null::integer) as n`),
      );
      return Number(row?.n ?? 0);
    },

    /**
     * How many more sends the mailbox may make in the 24 h since `since`: the lesser of its Gmail
     * account's headroom (the highest budget set on a live record of the address, less what every
     * record of it sent, in any workspace) and its workspace's (the workspace's own budget, less
     * what its records of the address sent): `mailbox_budget_left`, migration 0055. The number
     * stays inside the service: another workspace's sends must not be shown.
     */
    async budgetLeftSince(mailboxId: string, since: Date): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`select mailbox_budget_left(${mailboxId}::uuid, ${since.toISOString()}::timestamptz) as n`),
      );
      return Number(row?.n ?? 0);
    },

    /** Records a consumed OAuth state; false if it was consumed before (a replayed callback). */
    async consumeOauthState(stateId: string): Promise<boolean> {
      const inserted = await db.insert(usedOauthStates).values({ stateId }).onConflictDoNothing().returning();
      return inserted.length > 0;
    },

    /** Connections and disconnections are evidence (scopes granted, policy version): written in their transaction. */
    async audit(entry: AuditEntry): Promise<void> {
      await recordAudit(db, entry);
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
