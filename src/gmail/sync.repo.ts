import { and, asc, desc, eq, gte, inArray, isNull, lte, ne, sql } from 'drizzle-orm';
import { createFollowUpRules } from '../campaigns/follow-ups.repo.js';
import { inTransaction, type Db } from '../db/connect.js';
import { contacts, mailboxes, mailEvents, memberships, messageContacts, messages, users } from '../db/schema.js';
import { anyOf, rowsOf } from '../db/pg-array.js';
import { isUniqueViolation } from '../db/pg-errors.js';
import { campaignSendOutcomeCtes, oneToOneOutcomeEvent, recordMailSignal } from '../webhooks/facts.js';
import { recordWebhookEvents } from '../webhooks/outbox.js';
import { ONE_TO_ONE_NOT_SENT, SEND_OUTCOME_UNKNOWN } from './gmail-client.js';
import { lockAddresses } from '../suppression/address-lock.js';
import { createSuppressionRepo } from '../suppression/suppression.repo.js';
import type { AddressHasher } from '../suppression/address-hash.js';
import { syncStateQueries } from './sync-state.repo.js';

type NewMessage = typeof messages.$inferInsert;

/**
 * A send recovery gave up on, which sync may still find in Sent (recordLateSent): its outcome
 * unknown for good, or a 1:1 send judged not sent. Never a failure Gmail answered.
 */
const givenUpSend = sql`${messages.status} = 'failed' and ${messages.errorCode} in (${SEND_OUTCOME_UNKNOWN}, ${ONE_TO_ONE_NOT_SENT}) and ${messages.gmailMessageId} is null`;

/** `from … where`: the mailbox (`this`) and every row of its address in its workspace (`other`), itself included. */
const rowsOfSameAddress = (mailboxId: string) =>
  sql`from ${mailboxes} this join ${mailboxes} other on other.workspace_id = this.workspace_id and lower(other.email) = lower(this.email)
      where this.id = ${mailboxId}::uuid`;

/**
 * Messages of this mailbox's address in this workspace, whichever row of it they were sent from:
 * a disconnected mailbox connected again is a new row, and its sync must still know our earlier
 * sends from it (not store them again as synced copies) and match notices and replies to them.
 */
const fromSameAddressAs = (mailboxId: string) => sql`${messages.mailboxId} in (select other.id ${rowsOfSameAddress(mailboxId)})`;

type NewMailEvent = typeof mailEvents.$inferInsert;

/** Our own message a reply or bounce is about: just what the rules need. */
export interface OriginalMessage {
  id: string;
  rfc822MessageId: string;
  toAddresses: string[];
  ccAddresses: string[];
  bccAddresses: string[];
  at: Date;
}

const originalColumns = { id: messages.id, rfc822MessageId: messages.rfc822MessageId, toAddresses: messages.toAddresses, ccAddresses: messages.ccAddresses, bccAddresses: messages.bccAddresses, at: messages.at };

/**
 * Queries of mailbox sync. Lookups run before a message is written; the write (message,
 * contact links, event, suppression) runs in one transaction so that a crash leaves either
 * all of it or none, and a message already stored is never processed twice.
 */
function syncQueries(db: Db, hashAddress: AddressHasher) {
  /** Which of these Gmail ids the mailbox's rows hold already (ours or synced), with each one's time (when sent or received). */
  async function heldGmailIds(mailboxId: string, gmailIds: string[]): Promise<Map<string, Date>> {
    if (gmailIds.length === 0) return new Map();
    const rows = await db
      .select({ id: messages.gmailMessageId, at: messages.at })
      .from(messages)
      .where(and(eq(messages.mailboxId, mailboxId), anyOf(messages.gmailMessageId, gmailIds)));
    return new Map(rows.map((r) => [r.id!, r.at]));
  }

  return {
    ...createSuppressionRepo(db, hashAddress),
    ...createFollowUpRules(db),
    ...syncStateQueries(db),
    heldGmailIds,
    /** Opt-out locks of several addresses at once, in key order (suppression/address-lock.ts): before a notice's suppressions. */
    lockAddresses: (workspaceId: string, emails: string[]) => lockAddresses(db, workspaceId, emails),

    /** Which of these Gmail ids this mailbox already holds (ours or synced): no need to fetch them again. */
    async knownGmailIds(mailboxId: string, gmailIds: string[]): Promise<Set<string>> {
      return new Set((await heldGmailIds(mailboxId, gmailIds)).keys());
    },

    /** Contacts of the workspace among these addresses (compared lowercased). */
    async contactsAmong(workspaceId: string, addresses: string[]): Promise<{ id: string; email: string }[]> {
      const lowered = [...new Set(addresses.map((a) => a.toLowerCase()))];
      if (lowered.length === 0) return [];
      return db
        .select({ id: contacts.id, email: sql<string>`lower(${contacts.email})` })
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), anyOf(sql`lower(${contacts.email})`, lowered), isNull(contacts.deletedAt)));
    },

    /** Whether an address is one of the workspace's own people: a member's login or a connected mailbox. */
    async isTeammate(workspaceId: string, address: string): Promise<boolean> {
      const [row] = rowsOf<{ teammate: boolean }>(
        await db.execute(sql`select exists (
            select 1 from ${memberships} m join ${users} u on u.id = m.user_id
            where m.workspace_id = ${workspaceId}::uuid and u.email = ${address} and u.deleted_at is null
          ) or exists (
            select 1 from ${mailboxes} b where b.workspace_id = ${workspaceId}::uuid and lower(b.email) = ${address} and b.deleted_at is null
          ) as teammate`),
      );
      return row?.teammate === true;
    },

    /** The last good sync of this address's earlier connections in the workspace (disconnected rows, until their purge). */
    async lastSyncOfEarlierConnections(mailboxId: string): Promise<Date | undefined> {
      const [row] = rowsOf<{ at: string | Date | null }>(
        await db.execute(sql`
          select max(other.last_sync_at) as at ${rowsOfSameAddress(mailboxId)} and other.id <> this.id`),
      );
      return row?.at ? new Date(row.at) : undefined;
    },

    /**
     * Our own send with this Message-ID from this mailbox's address, if any; `open` when its
     * outcome is still unknown (`sending`, no Gmail id yet): a send retried after recovery
     * reuses its Message-ID, so the open row comes first, then one recovery gave up on
     * (recordLateSent).
     */
    async findOwnSend(workspaceId: string, mailboxId: string, rfc822MessageId: string): Promise<{ id: string; open: boolean } | undefined> {
      const open = sql<boolean>`${messages.status} = 'sending' and ${messages.gmailMessageId} is null`;
      const [row] = await db
        .select({ id: messages.id, open })
        .from(messages)
        // workspace + Message-ID is indexed; the address narrows it to sends from this mailbox (any row of it).
        .where(
          and(
            eq(messages.workspaceId, workspaceId),
            eq(messages.rfc822MessageId, rfc822MessageId),
            fromSameAddressAs(mailboxId),
            eq(messages.synced, false),
          ),
        )
        .orderBy(desc(open), desc(sql`${givenUpSend}`))
        .limit(1);
      return row && { id: row.id, open: row.open === true };
    },

    /**
     * Sync met, among the mailbox's sent mail, a send of ours that recovery had given up on: a
     * 1:1 "not sent", or an outcome left unknown for good (a last look that could not read back
     * far enough; a send-only mailbox connected again with reading). Gmail stored it, so it went
     * out: its message row becomes `sent`, with Gmail's ids and the time Gmail dated it, and so
     * does a campaign send's ledger row (its counters follow by trigger), with the `message.sent`
     * webhook event a sent outcome has, dated now: it corrects the `message.failed` sent before,
     * and a consumer ordering by `occurredAt` must see it last. A sequence's next step is not
     * queued: the sequence ended when the outcome was given up, and a follow-up days late is not
     * what was planned. Inside `transaction`, so a 1:1 row's event commits with it. False when
     * nothing was given up (already settled), or when another row of the mailbox holds that
     * Gmail id.
     */
    async recordLateSent(messageRowId: string, gmail: { id: string; threadId: string }, at: Date): Promise<boolean> {
      // A campaign send's ledger row is locked before its message row, the order purges and the
      // ledger's outcomes lock in (else the two could deadlock).
      await db.execute(sql`select 1 from campaign_sends where message_id = ${messageRowId}::uuid for update`);
      const [row] = rowsOf<{ id: string; workspace_id: string; mailbox_id: string | null; campaign: boolean }>(
        await db.execute(sql`
          with m as (
            update messages set status = 'sent', error_code = null, gmail_message_id = ${gmail.id}, gmail_thread_id = ${gmail.threadId}, at = ${at.toISOString()}::timestamptz
            where id = ${messageRowId}::uuid and ${givenUpSend}
              and not exists (select 1 from messages held where held.mailbox_id = messages.mailbox_id and held.gmail_message_id = ${gmail.id} and held.workspace_id = messages.workspace_id)
            returning id, workspace_id, mailbox_id),
          ledger as (
            update campaign_sends s set status = 'sent', error_code = null, gmail_message_id = ${gmail.id}, gmail_thread_id = ${gmail.threadId}, sent_at = ${at.toISOString()}::timestamptz
            from m where s.message_id = m.id and s.status = 'failed' and s.error_code = ${SEND_OUTCOME_UNKNOWN}
            returning s.id, s.workspace_id, s.campaign_id, s.step, s.contact_id, s.recipient_id, s.email, s.message_id)${campaignSendOutcomeCtes('message.sent', new Date())}
          select m.id, m.workspace_id, m.mailbox_id, exists (select 1 from ledger) as campaign from m`),
      );
      if (!row) return false;
      if (!row.campaign) {
        await recordWebhookEvents(db, [oneToOneOutcomeEvent({ id: row.id, workspaceId: row.workspace_id, mailboxId: row.mailbox_id, status: 'sent', errorCode: null })]);
      }
      return true;
    },

    /**
     * Sync met a send of ours among the mailbox's sent mail while its outcome is still open:
     * Gmail stored it. Its Gmail ids are kept on the row for recovery (sent-copy.ts), which
     * settles the send; only an open row, so no later outcome is touched. True when recorded.
     */
    async recordSeenSend(messageRowId: string, gmail: { id: string; threadId: string }): Promise<boolean> {
      try {
        const recorded = await db
          .update(messages)
          .set({ gmailMessageId: gmail.id, gmailThreadId: gmail.threadId })
          .where(and(eq(messages.id, messageRowId), eq(messages.status, 'sending'), isNull(messages.gmailMessageId)))
          .returning({ id: messages.id });
        return recorded.length > 0;
      } catch (error) {
        // Another row of the mailbox holds that Gmail id already: nothing to add, and a failure
        // here would fail every pass at this message, so sync would never move past it.
        if (!isUniqueViolation(error)) throw error;
        return false;
      }
    },

    /** When a send's message row was written (its claim): how far back recovery's last look reads sent mail (sent-copy.ts). */
    async sendClaimedAt(messageRowId: string): Promise<Date | undefined> {
      const [row] = await db.select({ at: messages.createdAt }).from(messages).where(eq(messages.id, messageRowId));
      return row?.at;
    },

    /** The Gmail ids sync recorded on a send still `sending` (recordSeenSend), if it did. */
    async seenSend(messageRowId: string): Promise<{ id: string; threadId: string } | undefined> {
      const [row] = await db
        .select({ id: messages.gmailMessageId, threadId: messages.gmailThreadId })
        .from(messages)
        .where(and(eq(messages.id, messageRowId), eq(messages.status, 'sending')));
      return row?.id ? { id: row.id, threadId: row.threadId ?? '' } : undefined;
    },

    /**
     * Outbound messages with these Message-IDs: what a reply or a bounce can be about.
     * A reply may answer any mailbox's mail of the workspace; a bounce notice only mail sent
     * from the mailbox it arrived in (`mailboxId`), so a forged notice cannot reach further.
     */
    async findOutboundByRfc822Ids(workspaceId: string, rfc822MessageIds: string[], mailboxId?: string): Promise<OriginalMessage[]> {
      if (rfc822MessageIds.length === 0) return [];
      const rows = await db
        .select(originalColumns)
        .from(messages)
        .where(
          and(
            eq(messages.workspaceId, workspaceId),
            eq(messages.direction, 'outbound'),
            anyOf(messages.rfc822MessageId, rfc822MessageIds),
            mailboxId ? fromSameAddressAs(mailboxId) : undefined,
          ),
        )
        // Prefer the row of our own send over a synced copy of it.
        .orderBy(asc(messages.synced), asc(messages.createdAt));
      return rows.map((r) => ({ ...r, rfc822MessageId: r.rfc822MessageId! }));
    },

    /**
     * A notice that does not say which message bounced: the latest message this mailbox sent
     * to that address (To, Cc or Bcc, in any case) between `from` and `to`.
     */
    async latestSendTo(workspaceId: string, mailboxId: string, address: string, window: { from: Date; to: Date }): Promise<OriginalMessage | undefined> {
      const [row] = await db
        .select(originalColumns)
        .from(messages)
        .where(
          and(
            eq(messages.workspaceId, workspaceId),
            fromSameAddressAs(mailboxId),
            eq(messages.direction, 'outbound'),
            inArray(messages.status, ['sent', 'sending']),
            gte(messages.at, window.from),
            lte(messages.at, window.to),
            // Notices give addresses in lower case; a send keeps what its author typed (`Ann.Lee@…`).
            sql`exists (select 1 from unnest(${messages.toAddresses} || ${messages.ccAddresses} || ${messages.bccAddresses}) as a(address) where lower(a.address) = ${address.toLowerCase()})`,
          ),
        )
        .orderBy(desc(messages.at), asc(messages.synced))
        .limit(1);
      return row ? { ...row, rfc822MessageId: row.rfc822MessageId ?? '' } : undefined;
    },

    /** Soft bounces of an address in the workspace since `since`, not counting those from notice `exceptSource`. */
    async countSoftBounces(workspaceId: string, address: string, since: Date, exceptSource: string): Promise<number> {
      const [row] = await db
        .select({ n: sql<number>`count(distinct ${mailEvents.sourceGmailMessageId})::int` })
        .from(mailEvents)
        .where(
          and(
            eq(mailEvents.workspaceId, workspaceId),
            eq(sql`lower(${mailEvents.recipient})`, address.toLowerCase()),
            eq(mailEvents.type, 'bounce'),
            gte(mailEvents.at, since),
            sql`${mailEvents.detail} ->> 'kind' = 'soft'`,
            ne(mailEvents.sourceGmailMessageId, exceptSource),
          ),
        );
      return Number(row?.n ?? 0);
    },

    /**
     * Inserts a synced message (idempotent on mailbox + Gmail id) and links its contacts.
     * Undefined when the mailbox already had it, so the caller skips its events too.
     */
    async insertSyncedMessage(values: NewMessage & { workspaceId: string; mailboxId: string }, contactIds: string[]) {
      // A disconnect marks the mailbox under a row lock: a sync still running waits for it here, then stores nothing.
      const [mailbox] = await db
        .select({ id: mailboxes.id })
        .from(mailboxes)
        .where(and(eq(mailboxes.id, values.mailboxId), isNull(mailboxes.deletedAt)))
        .for('share');
      if (!mailbox) return undefined;
      const [row] = await db
        .insert(messages)
        .values({ ...values, synced: true })
        .onConflictDoNothing({ target: [messages.mailboxId, messages.gmailMessageId, messages.workspaceId], where: sql`gmail_message_id is not null` })
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

    /** One event per (message, type, source Gmail message, recipient): recording it again changes nothing. */
    async insertMailEvent(values: NewMailEvent): Promise<boolean> {
      // Its campaign and recipient (when the message is a campaign send's) are filled in by a
      // trigger (migration 0021), for the campaign's stats.
      const inserted = await db.insert(mailEvents).values(values).onConflictDoNothing().returning({ id: mailEvents.id });
      // Inside the sync's transaction for this message (signals.ts): the webhook event commits with it.
      if (inserted[0]) await recordMailSignal(db, inserted[0].id);
      return inserted.length > 0;
    },

  };
}

export function createSyncRepo(db: Db, hashAddress: AddressHasher) {
  return { ...syncQueries(db, hashAddress), transaction: inTransaction(db, (tx) => syncQueries(tx, hashAddress)) };
}

export type SyncRepo = ReturnType<typeof createSyncRepo>;
/** The queries as seen inside `repo.transaction`. */
export type SyncQueries = ReturnType<typeof syncQueries>;
