import { and, eq, inArray, isNull, lt, sql } from 'drizzle-orm';
import { takeOverTerms, type ParkedFor } from '../campaigns/parked-sends.js';
import { inTransaction, type Db } from '../db/connect.js';
import { contacts, messageContacts, messages } from '../db/schema.js';
import type { AddressHasher } from '../suppression/address-hash.js';
import { lockAddresses } from '../suppression/address-lock.js';
import { lockSendingMailboxSql } from '../campaigns/gate-sql.js';
import { rowsOf } from '../db/pg-array.js';
import { createIdempotencyRepo } from '../idempotency/idempotency.repo.js';
import { createSuppressionRepo } from '../suppression/suppression.repo.js';
import { oneToOneOutcomeEvent } from '../webhooks/facts.js';
import { recordWebhookEvents } from '../webhooks/outbox.js';

export type MessageRow = typeof messages.$inferSelect;
export type NewMessage = typeof messages.$inferInsert;

function messageQueries(db: Db, hashAddress: AddressHasher) {
  const idempotencyKeys = createIdempotencyRepo(db);
  return {
    ...createSuppressionRepo(db, hashAddress),

    /** Whether the request's Idempotency-Key is still its claim (a retry may have taken it over), locked for the claim's transaction. */
    lockIdempotencyClaim: idempotencyKeys.lockClaim,
    /** The request's Idempotency-Key learns the send it claimed, in the claim's transaction (idempotency/README.md). */
    linkIdempotencyKey: idempotencyKeys.linkMessage,

    /** Invariant 1: the gate's lock on every recipient address (see suppression/address-lock.ts). */
    lockAddresses: (workspaceId: string, emails: string[]) => lockAddresses(db, workspaceId, emails),
    /** The mailbox, locked shared until the transaction ends (gate-sql.ts): whether it may still send, or is gone. */
    async lockSendingMailbox(mailboxId: string): Promise<{ sending: boolean; gone: boolean }> {
      const [row] = rowsOf<{ sending: boolean; gone: boolean }>(await db.execute(lockSendingMailboxSql(mailboxId)));
      return row ?? { sending: false, gone: true };
    },

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
          .where(and(eq(contacts.workspaceId, values.workspaceId), inArray(sql`lower(${contacts.email})`, lowered), isNull(contacts.deletedAt)));
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

    /**
     * A change to a 1:1 send this worker holds: only while it is `sending` under this
     * lease, so a worker whose lease was taken over changes nothing (fencing).
     */
    /** `unseen`: only while sync has not recorded a Gmail copy of it (gmail/sent-copy.ts): a "not sent" verdict gives way to that record. */
    async updateLeased(id: string, owner: string, values: Partial<NewMessage>, options: { unseen?: boolean } = {}): Promise<MessageRow | undefined> {
      const change = (tx: Db) =>
        tx
          .update(messages)
          .set(values)
          .where(and(eq(messages.id, id), eq(messages.status, 'sending'), eq(messages.leaseOwner, owner), options.unseen ? isNull(messages.gmailMessageId) : undefined))
          .returning();
      if (values.status !== 'sent' && values.status !== 'failed') return (await change(db))[0];
      // An outcome: its webhook event commits with it.
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        const [row] = await change(tx);
        if (row) await recordWebhookEvents(tx, [oneToOneOutcomeEvent(row)]);
        return row;
      });
    },

    async deleteLeased(id: string, owner: string): Promise<void> {
      await db.delete(messages).where(and(eq(messages.id, id), eq(messages.status, 'sending'), eq(messages.leaseOwner, owner)));
    },

    /** 1:1 sends whose lease expired: a dead worker's, or one whose outcome waits for a mailbox search. */
    async expiredLeases(now: Date, limit = 100): Promise<MessageRow[]> {
      return db
        .select()
        .from(messages)
        .where(and(eq(messages.status, 'sending'), lt(messages.leaseExpiresAt, now)))
        .orderBy(messages.leaseExpiresAt)
        .limit(limit);
    },

    /**
     * Takes over an expired lease, only if it is still the one seen. `parkedFor`: the send is
     * parked until its mailbox can be searched (campaigns/parked-sends.ts).
     */
    async takeOver(row: MessageRow, owner: string, now: Date, until: Date, parkedFor?: ParkedFor): Promise<boolean> {
      const parking = takeOverTerms(parkedFor);
      const taken = await db
        .update(messages)
        .set({ leaseOwner: owner, leaseExpiresAt: until, errorCode: parking.errorCode })
        .where(
          and(
            eq(messages.id, row.id),
            eq(messages.status, 'sending'),
            row.leaseOwner === null ? isNull(messages.leaseOwner) : eq(messages.leaseOwner, row.leaseOwner),
            lt(messages.leaseExpiresAt, now),
            parking.condition,
          ),
        )
        .returning({ id: messages.id });
      return taken.length > 0;
    },
  };
}

export function createMessagesRepo(db: Db, hashAddress: AddressHasher) {
  return { ...messageQueries(db, hashAddress), transaction: inTransaction(db, (tx) => messageQueries(tx, hashAddress)) };
}

export type MessagesRepo = ReturnType<typeof createMessagesRepo>;
