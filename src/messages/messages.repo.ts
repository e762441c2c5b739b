import { and, eq, inArray, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { contacts, messageContacts, messages } from '../db/schema.js';
import { createSuppressionRepo } from '../suppression/suppression.repo.js';

export type MessageRow = typeof messages.$inferSelect;
export type NewMessage = typeof messages.$inferInsert;

function messageQueries(db: Db) {
  return {
    ...createSuppressionRepo(db),

    async findById(workspaceId: string, id: string): Promise<MessageRow | undefined> {
      const [row] = await db
        .select()
        .from(messages)
        .where(and(eq(messages.workspaceId, workspaceId), eq(messages.id, id)))
        .limit(1);
      return row;
    },

    /** Inserts the message and links it to every contact of the workspace among its addresses. */
    async insertWithContacts(values: NewMessage & { workspaceId: string }, addresses: string[]): Promise<MessageRow> {
      const [row] = await db.insert(messages).values(values).returning();
      const lowered = [...new Set(addresses.map((a) => a.toLowerCase()))];
      if (lowered.length > 0) {
        const matches = await db
          .select({ id: contacts.id })
          .from(contacts)
          .where(and(eq(contacts.workspaceId, values.workspaceId), inArray(sql`lower(${contacts.email})`, lowered)));
        if (matches.length > 0) {
          await db
            .insert(messageContacts)
            .values(matches.map((c) => ({ messageId: row!.id, contactId: c.id, workspaceId: values.workspaceId })))
            .onConflictDoNothing();
        }
      }
      return row!;
    },

    async update(id: string, values: Partial<NewMessage>): Promise<MessageRow | undefined> {
      const [row] = await db.update(messages).set(values).where(eq(messages.id, id)).returning();
      return row;
    },
  };
}

export function createMessagesRepo(db: Db) {
  return { ...messageQueries(db), transaction: inTransaction(db, messageQueries) };
}

export type MessagesRepo = ReturnType<typeof createMessagesRepo>;
