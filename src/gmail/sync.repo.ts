import { and, asc, eq, inArray, isNull, lte, or, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { contacts, mailboxes, mailEvents, messageContacts, messages } from '../db/schema.js';
import { createSuppressionRepo } from '../suppression/suppression.repo.js';

export type MailEventRow = typeof mailEvents.$inferSelect;
type NewMessage = typeof messages.$inferInsert;
type NewMailEvent = typeof mailEvents.$inferInsert;

/** Our own message a reply or bounce is about: just what the rules need. */
export interface OriginalMessage {
  id: string;
  rfc822MessageId: string;
  toAddresses: string[];
  ccAddresses: string[];
}

/**
 * Queries of mailbox sync. Lookups run before a message is written; the write (message,
 * contact links, event, suppression) runs in one transaction so that a crash leaves either
 * all of it or none, and a message already stored is never processed twice.
 */
function syncQueries(db: Db) {
  return {
    ...createSuppressionRepo(db),

    /** Which of these Gmail ids this mailbox already holds (ours or synced): no need to fetch them again. */
    async knownGmailIds(mailboxId: string, gmailIds: string[]): Promise<Set<string>> {
      if (gmailIds.length === 0) return new Set();
      const rows = await db
        .select({ id: messages.gmailMessageId })
        .from(messages)
        .where(and(eq(messages.mailboxId, mailboxId), inArray(messages.gmailMessageId, gmailIds)));
      return new Set(rows.map((r) => r.id!));
    },

    /** Contacts of the workspace among these addresses (compared lowercased). */
    async contactsAmong(workspaceId: string, addresses: string[]): Promise<{ id: string; email: string }[]> {
      const lowered = [...new Set(addresses.map((a) => a.toLowerCase()))];
      if (lowered.length === 0) return [];
      return db
        .select({ id: contacts.id, email: sql<string>`lower(${contacts.email})` })
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), inArray(sql`lower(${contacts.email})`, lowered)));
    },

    /**
     * Whether this mailbox already records a message we sent with this Message-ID (sync
     * finding our own send in SENT, possibly before the send ledger stored Gmail's id).
     */
    async isOwnSend(workspaceId: string, mailboxId: string, rfc822MessageId: string): Promise<boolean> {
      const [row] = await db
        .select({ id: messages.id })
        .from(messages)
        // workspace + Message-ID is indexed; the mailbox narrows it to this mailbox's sends.
        .where(
          and(
            eq(messages.workspaceId, workspaceId),
            eq(messages.rfc822MessageId, rfc822MessageId),
            eq(messages.mailboxId, mailboxId),
            eq(messages.synced, false),
          ),
        )
        .limit(1);
      return row !== undefined;
    },

    /** Outbound messages of the workspace with these Message-IDs: what a reply or a bounce can be about. */
    async findOutboundByRfc822Ids(workspaceId: string, rfc822MessageIds: string[]): Promise<OriginalMessage[]> {
      if (rfc822MessageIds.length === 0) return [];
      const rows = await db
        .select({ id: messages.id, rfc822MessageId: messages.rfc822MessageId, toAddresses: messages.toAddresses, ccAddresses: messages.ccAddresses })
        .from(messages)
        .where(and(eq(messages.workspaceId, workspaceId), eq(messages.direction, 'outbound'), inArray(messages.rfc822MessageId, rfc822MessageIds)))
        // Prefer the row of our own send over a synced copy of it.
        .orderBy(asc(messages.synced), asc(messages.createdAt));
      return rows.map((r) => ({ ...r, rfc822MessageId: r.rfc822MessageId! }));
    },

    /**
     * Inserts a synced message (idempotent on mailbox + Gmail id) and links its contacts.
     * Undefined when the mailbox already had it, so the caller skips its events too.
     */
    async insertSyncedMessage(values: NewMessage & { workspaceId: string; mailboxId: string }, contactIds: string[]) {
      const [row] = await db
        .insert(messages)
        .values({ ...values, synced: true })
        .onConflictDoNothing({ target: [messages.mailboxId, messages.gmailMessageId, messages.workspaceId] })
        .returning({ id: messages.id });
      if (!row) return undefined;
      if (contactIds.length > 0) {
        await db
          .insert(messageContacts)
          .values(contactIds.map((contactId) => ({ messageId: row.id, contactId, workspaceId: values.workspaceId })))
          .onConflictDoNothing();
      }
      return row;
    },

    /** One event per (message, type, source Gmail message): recording it again changes nothing. */
    async insertMailEvent(values: NewMailEvent): Promise<boolean> {
      const inserted = await db.insert(mailEvents).values(values).onConflictDoNothing().returning({ id: mailEvents.id });
      return inserted.length > 0;
    },

    /**
     * Reply events on these messages of ours (issue 4: a reply stops that contact's sequence).
     * Automatic replies (out of office…) carry `detail.automatic = true`; callers decide.
     */
    async findEvents(workspaceId: string, messageIds: string[], type?: MailEventRow['type']): Promise<MailEventRow[]> {
      if (messageIds.length === 0) return [];
      return db
        .select()
        .from(mailEvents)
        .where(and(eq(mailEvents.workspaceId, workspaceId), inArray(mailEvents.messageId, messageIds), type ? eq(mailEvents.type, type) : undefined))
        .orderBy(asc(mailEvents.at));
    },

    /**
     * Success: counters add up, and history moves forward only (a second process, or a push
     * racing a poll, never moves it back). No `historyId`: history is left as it is.
     */
    async recordSyncSuccess(mailboxId: string, input: { historyId?: string; seen: number; at: Date }): Promise<void> {
      const next = input.historyId && /^\d+$/.test(input.historyId) ? input.historyId : undefined;
      await db
        .update(mailboxes)
        .set({
          lastSyncAt: input.at,
          lastSyncError: null,
          messagesSeen: sql`${mailboxes.messagesSeen} + ${input.seen}`,
          ...(next
            ? {
                // CASE evaluates in order, so the numeric cast only meets a numeric string.
                historyId: sql`case when ${mailboxes.historyId} is null then ${next}
                  when ${mailboxes.historyId} !~ '^[0-9]+$' then ${next}
                  when ${mailboxes.historyId}::numeric < ${next}::numeric then ${next}
                  else ${mailboxes.historyId} end`,
              }
            : {}),
        })
        .where(eq(mailboxes.id, mailboxId));
    },

    /** Failure: the reason is shown to the mailbox's workspace; history and counters stay. */
    async recordSyncFailure(mailboxId: string, reason: string): Promise<void> {
      await db.update(mailboxes).set({ lastSyncError: reason }).where(eq(mailboxes.id, mailboxId));
    },

    /** Syncing mailboxes whose push watch is missing or expires before `before`. */
    async listWatchesDue(before: Date) {
      return db
        .select()
        .from(mailboxes)
        .where(
          and(
            eq(mailboxes.syncEnabled, true),
            eq(mailboxes.status, 'active'),
            or(isNull(mailboxes.watchExpiresAt), lte(mailboxes.watchExpiresAt, before)),
          ),
        );
    },

    async recordWatch(mailboxId: string, expiresAt: Date | null): Promise<void> {
      await db.update(mailboxes).set({ watchExpiresAt: expiresAt }).where(eq(mailboxes.id, mailboxId));
    },
  };
}

export function createSyncRepo(db: Db) {
  return { ...syncQueries(db), transaction: inTransaction(db, syncQueries) };
}

export type SyncRepo = ReturnType<typeof createSyncRepo>;
