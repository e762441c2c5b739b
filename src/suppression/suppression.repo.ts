import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { and, asc, desc, eq, getTableColumns, inArray, isNotNull, isNull, ne, or, sql } from 'drizzle-orm';
import type { AddressHasher } from './address-hash.js';
import { addressKey } from '../contacts/email-address.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { suppressedSql } from './suppressed-sql.js';
import { appendConsent, latestConsentStatus, type ConsentValues } from '../contacts/consent-records.js';
import { cursorTimestamp, olderThanCursor, type PageCursor } from '../http/cursor.js';
import { inTransaction, type Db } from '../db/connect.js';
import { lockAddresses, lockAddressesAndContacts, underAddressLock } from './address-lock.js';
import { recordRecipientUnsubscribed, recordSuppressionAdded, recordSuppressionRemoved } from '../webhooks/facts.js';
import { campaignSends, campaigns, contacts, recipients, suppressions, workspaces } from '../db/schema.js';
import { createFollowUpRules, oneCompletionQuestion } from '../campaigns/follow-ups.repo.js';

export type SuppressionReason = (typeof suppressions.$inferInsert)['reason'];

/**
 * Every write that makes an address suppressed ends, in its own transaction, the sequences the
 * entry stops (called here, by the functions that write entries, so no caller can forget one — a
 * bounce, a recipient's opt-out, an entry a user adds through the API or the web page): the
 * address's queued later steps that the gate would now refuse (the gate's own rule, each
 * campaign's topic) become `skipped` `suppressed`, and a campaign with nothing left completes
 * (campaigns/follow-ups.repo.ts skipFollowUps). Under the address lock the write took first, then
 * the ledger's rows, then a completed campaign's row: the gate's order. Before, they stayed
 * queued until their day and the campaign showed `sending` with nobody left to mail.
 */
const endSequencesOf = (tx: Db, workspaceId: string, email: string) =>
  createFollowUpRules(tx).skipFollowUps(workspaceId, { reason: 'suppressed', emails: [email] }, new Date());

/** A new entry of `email` written: its `suppression.added` fact, then the sequences it stops (endSequencesOf). */
async function entryAdded(tx: Db, row: typeof suppressions.$inferSelect, email: string): Promise<void> {
  await recordSuppressionAdded(tx, row);
  await endSequencesOf(tx, row.workspaceId, email);
}

/**
 * The workspace's suppression list (P-08). `findSuppressed` is called inside the
 * transaction that claims a send, after its address locks, so a send and an opt-out cannot
 * pass each other.
 */
export function createSuppressionRepo(db: Db, hashAddress: AddressHasher) {
  return {
    /**
     * The addresses among `emails` that must not be mailed (as their comparison keys,
     * `addressKey`), by the one rule campaigns use too (suppressed-sql.ts): each address and
     * its keyed hash probed, `topic` adding that topic's scope.
     */
    async findSuppressed(workspaceId: string, emails: string[], topic?: string): Promise<Set<string>> {
      const keys = [...new Set(emails.map(addressKey))];
      if (keys.length === 0) return new Set();
      const rows = rowsOf<{ email: string }>(
        await db.execute(sql`
          select a.email from unnest(${pgArray(keys)}::text[], ${pgArray(keys.map(hashAddress))}::text[]) as a(email, address_hash)
          where ${suppressedSql(sql`${workspaceId}::uuid`, sql`a.email`, sql`a.address_hash`, topic ?? null, { probesOnly: true })}`),
      );
      return new Set(rows.map((r) => r.email));
    },

    /** Idempotent: suppressing an address twice keeps the first entry. The address's follow-ups end (endSequencesOf). */
    async suppress(entry: { workspaceId: string; email: string; reason: SuppressionReason; source?: string; scope?: string; createdBy?: string }) {
      await underAddressLock(
        db,
        (tx) => lockAddresses(tx, entry.workspaceId, [entry.email]),
        async (tx) => {
          const [row] = await tx
            .insert(suppressions)
            .values({ ...entry, scope: entry.scope ?? 'all', addressHash: hashAddress(entry.email) })
            .onConflictDoNothing()
            .returning();
          if (row) await entryAdded(tx, row, entry.email);
        },
      );
    },
  };
}

export type SuppressionRepo = ReturnType<typeof createSuppressionRepo>;

export type SuppressionRow = typeof suppressions.$inferSelect;
export type RecipientRow = typeof recipients.$inferSelect;

/**
 * Everything the suppression feature reads and writes: the list itself, the recipient a
 * token names, and the consent and audit rows an opt-out appends beside it.
 */
function suppressionListQueries(db: Db, hashAddress: AddressHasher) {
  /** The entries of one address: by the address itself, or by its keyed hash once the address was purged. */
  const ofAddress = (email: string) =>
    or(eq(sql`lower(${suppressions.email})`, addressKey(email)), eq(suppressions.addressHash, hashAddress(email)))!;
  return {
    ...createSuppressionRepo(db, hashAddress),

    /**
     * The one query not scoped by a workspace the caller proved: an unsubscribe token is the
     * credential, and the recipient row it names says which workspace it belongs to. Every
     * other query below takes that workspace.
     */
    async findRecipientById(id: string): Promise<RecipientRow | undefined> {
      const [row] = await db.select().from(recipients).where(eq(recipients.id, id)).limit(1);
      return row;
    },

    /** The workspace a campaign belongs to, or undefined once it is deleted. */
    async findCampaignWorkspaceId(campaignId: string): Promise<string | undefined> {
      const [row] = await db.select({ workspaceId: campaigns.workspaceId }).from(campaigns).where(eq(campaigns.id, campaignId)).limit(1);
      return row?.workspaceId;
    },

    async findWorkspaceName(workspaceId: string): Promise<string | undefined> {
      const [row] = await db.select({ name: workspaces.name }).from(workspaces).where(eq(workspaces.id, workspaceId)).limit(1);
      return row?.name;
    },

    /**
     * Topics of the workspace's launched campaigns (scheduled or later), for the preference
     * center: a draft's topic is the sender's plan, not yet anyone's mail, and not shown to
     * every recipient.
     */
    async listCampaignTopics(workspaceId: string): Promise<string[]> {
      const rows = await db
        .selectDistinct({ topic: campaigns.topic })
        .from(campaigns)
        .where(and(eq(campaigns.workspaceId, workspaceId), isNotNull(campaigns.topic), isNull(campaigns.deletedAt), ne(campaigns.status, 'draft')));
      return rows.map((r) => r.topic!);
    },

    /** Every entry (any scope) for one address, case-insensitively. */
    async listEntriesOfAddress(workspaceId: string, email: string): Promise<SuppressionRow[]> {
      return db
        .select()
        .from(suppressions)
        .where(and(eq(suppressions.workspaceId, workspaceId), ofAddress(email)))
        .orderBy(asc(suppressions.scope));
    },

    async findEntry(workspaceId: string, email: string, scope: string): Promise<SuppressionRow | undefined> {
      const [row] = await db
        .select()
        .from(suppressions)
        .where(
          and(eq(suppressions.workspaceId, workspaceId), ofAddress(email), eq(suppressions.scope, scope)),
        )
        .limit(1);
      return row;
    },

    async findEntryById(workspaceId: string, id: string): Promise<SuppressionRow | undefined> {
      const [row] = await db
        .select()
        .from(suppressions)
        .where(and(eq(suppressions.workspaceId, workspaceId), eq(suppressions.id, id)))
        .limit(1);
      return row;
    },

    /**
     * Inserts the entry unless (address, scope) is already listed; returns the new row, or
     * undefined when it existed. A concurrent insert of the same entry waits on the unique
     * index and then finds the first one's row, so replays serialize here. A new entry ends
     * the address's follow-ups it stops (endSequencesOf).
     */
    async insertEntry(entry: { workspaceId: string; email: string; scope: string; reason: SuppressionReason; source: string; createdBy?: string | null }) {
      // Under the address lock: a send being claimed for this address finishes its claim first (invariant 1).
      const [row] = await underAddressLock(
        db,
        (tx) => lockAddresses(tx, entry.workspaceId, [entry.email]),
        async (tx) => {
          const inserted = await tx.insert(suppressions).values({ ...entry, addressHash: hashAddress(entry.email) }).onConflictDoNothing().returning();
          if (inserted[0]) await entryAdded(tx, inserted[0], entry.email);
          return inserted;
        },
      );
      return row;
    },

    /**
     * A user's reason over the recipient's own entry (`ownReasons`: the reasons a recipient may
     * undo), under the address lock; undefined when the entry is gone or held already.
     */
    async holdEntry(workspaceId: string, entry: SuppressionRow, reason: SuppressionReason, ownReasons: readonly SuppressionReason[]): Promise<SuppressionRow | undefined> {
      const [row] = await underAddressLock(
        db,
        (tx) => lockAddresses(tx, workspaceId, entry.email ? [entry.email] : []),
        (tx) =>
          tx
            .update(suppressions)
            .set({ heldReason: reason })
            .where(and(eq(suppressions.workspaceId, workspaceId), eq(suppressions.id, entry.id), isNull(suppressions.heldReason), inArray(suppressions.reason, [...ownReasons])))
            .returning(),
      );
      return row;
    },

    /**
     * The recipient's own opt-out over an entry a user or a bounce made (any reason but
     * `unsubscribe`): the entry becomes the recipient's — reason `unsubscribe` and their link's
     * `source` (a campaign's unsubscribe count) — and keeps the other reason as `held_reason`,
     * so it still cannot be undone from the preference page and an admin removes it only with
     * consent evidence. Under the address lock, with the `unsubscribe` webhook event; undefined
     * when there is no such entry (none, or the recipient's own already).
     */
    async adoptEntry(workspaceId: string, email: string, scope: string, source: string): Promise<SuppressionRow | undefined> {
      const [row] = await underAddressLock(
        db,
        (tx) => lockAddresses(tx, workspaceId, [email]),
        async (tx) => {
          const adopted = await tx
            .update(suppressions)
            .set({ reason: 'unsubscribe', source, heldReason: sql`${suppressions.reason}` })
            .where(and(eq(suppressions.workspaceId, workspaceId), ofAddress(email), eq(suppressions.scope, scope), ne(suppressions.reason, 'unsubscribe')))
            .returning();
          if (adopted[0]) {
            await recordRecipientUnsubscribed(tx, adopted[0]);
            // The entry stopped the mail already; an entry older than the rule above may have left follow-ups queued.
            await endSequencesOf(tx, workspaceId, email);
          }
          return adopted;
        },
      );
      return row;
    },

    /**
     * Callers run this inside their transaction (with the audit row), so its webhook event
     * commits with it. `unheldOf`: only an entry of those reasons that no user's reason holds
     * (a recipient's own removal); undefined when there was none.
     */
    async deleteEntry(workspaceId: string, id: string, only?: { unheldOf: readonly SuppressionReason[] }): Promise<SuppressionRow | undefined> {
      const [row] = await db
        .delete(suppressions)
        .where(
          and(
            eq(suppressions.workspaceId, workspaceId),
            eq(suppressions.id, id),
            only ? and(isNull(suppressions.heldReason), inArray(suppressions.reason, [...only.unheldOf])) : undefined,
          ),
        )
        .returning();
      if (row) await recordSuppressionRemoved(db, row);
      return row;
    },

    /** Newest first, keyset-paginated on (created_at, id). */
    async listEntries(
      workspaceId: string,
      options: { limit: number; before?: PageCursor; email?: string; reason?: SuppressionReason; scope?: string },
    ): Promise<(SuppressionRow & { cursorAt: string })[]> {
      const conditions = [eq(suppressions.workspaceId, workspaceId)];
      if (options.before) conditions.push(olderThanCursor(suppressions.createdAt, suppressions.id, options.before));
      if (options.email) conditions.push(ofAddress(options.email));
      if (options.reason) conditions.push(eq(suppressions.reason, options.reason));
      if (options.scope) conditions.push(eq(suppressions.scope, options.scope));
      return db
        .select({ ...getTableColumns(suppressions), cursorAt: cursorTimestamp(suppressions.createdAt) })
        .from(suppressions)
        .where(and(...conditions))
        .orderBy(desc(suppressions.createdAt), desc(suppressions.id))
        .limit(options.limit);
    },

    /** The workspace's contact with this address, if there is one (the address may never have been a contact). */
    async findContactIdByEmail(workspaceId: string, email: string): Promise<string | undefined> {
      const [row] = await db
        .select({ id: contacts.id })
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), eq(sql`lower(${contacts.email})`, email.toLowerCase()), isNull(contacts.deletedAt)))
        .limit(1);
      return row?.id;
    },

    /**
     * The person an opt-out link names, when their contact's address changed since: the live
     * contacts whose campaign mail (of `campaignId`, the link's, when it names one) was for this
     * recipient's address, and that have another address now. Whatever the send's state: the link
     * is in mail that reached someone, and a send whose outcome was never recorded (`sending`,
     * `failed/outcome_unknown`) may be that mail (only `sent` counted before: an attacker's finding).
     */
    async findContactsMovedFromRecipient(workspaceId: string, recipientId: string, campaignId: string | undefined): Promise<string[]> {
      const rows = await db
        .selectDistinct({ id: contacts.id })
        .from(campaignSends)
        .innerJoin(recipients, eq(recipients.id, campaignSends.recipientId))
        .innerJoin(contacts, and(eq(contacts.id, campaignSends.contactId), eq(contacts.workspaceId, campaignSends.workspaceId), isNull(contacts.deletedAt)))
        .where(
          and(
            eq(campaignSends.workspaceId, workspaceId),
            eq(campaignSends.recipientId, recipientId),
            campaignId ? eq(campaignSends.campaignId, campaignId) : undefined,
            sql`lower(${contacts.email}) <> lower(${recipients.email})`,
          ),
        );
      return rows.map((r) => r.id);
    },

    /** The opt-out locks of these addresses and contacts at once, in key order (address-lock.ts). */
    lockAddressesAndContacts: (workspaceId: string, emails: string[], contactIds: string[]) => lockAddressesAndContacts(db, workspaceId, emails, contactIds),

    /**
     * The "don't track my opens and clicks" state (tracking-preference.ts) of the live contact
     * with this address and of the live contacts `alsoIds`, in id order.
     */
    async findContactsTracking(workspaceId: string, email: string, alsoIds: readonly string[]): Promise<{ id: string; trackingRefusedAt: Date | null }[]> {
      const byAddress = eq(sql`lower(${contacts.email})`, email.toLowerCase());
      return db
        .select({ id: contacts.id, trackingRefusedAt: contacts.trackingRefusedAt })
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), isNull(contacts.deletedAt), alsoIds.length > 0 ? or(byAddress, inArray(contacts.id, [...alsoIds])) : byAddress))
        .orderBy(asc(contacts.id));
    },

    async setContactTrackingRefused(workspaceId: string, contactId: string, refusedAt: Date | null): Promise<void> {
      await db
        .update(contacts)
        .set({ trackingRefusedAt: refusedAt })
        .where(and(eq(contacts.workspaceId, workspaceId), eq(contacts.id, contactId)));
    },

    /** The contact's current consent (contacts/consent-records.ts, which owns the history). */
    latestConsentStatus: (workspaceId: string, contactId: string) => latestConsentStatus(db, workspaceId, contactId),

    /** Runs `work` (entries, consent records) with one completion question at its end, for all its skips (campaigns/follow-ups.repo.ts oneCompletionQuestion). */
    oneCompletionQuestion: <T>(work: () => Promise<T>) => oneCompletionQuestion(db, work),

    /** Appends a consent record in this transaction (contacts/consent-records.ts: its locks, audit row and webhook event). */
    appendConsent: (values: ConsentValues, auditActor: string) => appendConsent(db, values, { actor: auditActor }),

    async insertAudit(entry: AuditEntry) {
      await recordAudit(db, entry);
    },
  };
}

export type SuppressionListQueries = ReturnType<typeof suppressionListQueries>;

/** The queries, plus `transaction` to run several of them atomically. */
export function createSuppressionListRepo(db: Db, hashAddress: AddressHasher) {
  return { ...suppressionListQueries(db, hashAddress), transaction: inTransaction(db, (tx) => suppressionListQueries(tx, hashAddress)) };
}

export type SuppressionListRepo = ReturnType<typeof createSuppressionListRepo>;
