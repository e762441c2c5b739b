import { and, asc, eq, or, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Db } from '../db/connect.js';
import { pgArray } from '../db/pg-array.js';
import { campaignSends, campaigns, consents, contacts, mailEvents, messageBareAddresses, messages, recipients, suppressions, trackingEvents } from '../db/schema.js';
import { inUuidList } from '../db/sql-lists.js';
import { contactRecordColumns } from '../contacts/contact-columns.js';
import { recordAudit, type AuditEntry } from './audit.js';
import { addressesKnownBy } from './contact-addresses.js';
import { addressIn, keysetRows, messageMetadata } from './export.repo.js';
import { subjectSeenBy } from './gmail-guard.js';

/*
 * What is held about some people (addresses, contacts) and/or some mailboxes of one
 * workspace, optionally within [from, to): the data-subject export (one address, all time)
 * and the legal disclosure (exactly a request's scope) both read through here, so they
 * cannot disagree about what "the data of X" is. Every query is scoped by workspace.
 */

export interface SubjectScope {
  workspaceId: string;
  /** Lowercased addresses. */
  addresses: readonly string[];
  contactIds: readonly string[];
  mailboxIds: readonly string[];
  from?: Date;
  to?: Date;
  /**
   * The scope was about some people (addresses, contact ids, addresses erased since). When
   * none of them is left (purged after the request was recorded), nothing about people
   * matches — the scope must never fall back to "everyone of these mailboxes". Default: it
   * names people when `addresses` or `contactIds` is non-empty.
   */
  namesPeople?: boolean;
}

/** The scope once its contacts are known: their addresses join the ones asked for. */
export interface ResolvedScope extends SubjectScope {
  resolvedContactIds: readonly string[];
}

const within = (column: AnyPgColumn | SQL, scope: SubjectScope): SQL | undefined =>
  and(
    scope.from ? sql`${column} >= ${scope.from.toISOString()}::timestamptz` : undefined,
    scope.to ? sql`${column} < ${scope.to.toISOString()}::timestamptz` : undefined,
  );

/** The people filter: undefined when the scope names nobody, `false` when the people it named are all gone. */
function aboutPeople(scope: ResolvedScope, filter: (addresses: readonly string[]) => SQL): SQL | undefined {
  if (scope.addresses.length > 0) return filter(scope.addresses);
  return scope.namesPeople ? sql`false` : undefined;
}

/** Both filters when both are given (mail between these mailboxes and these people), nothing when neither is. */
function both(byAddress: SQL | undefined, byMailbox: SQL | undefined): SQL {
  if (!byAddress && !byMailbox) return sql`false`;
  return and(byAddress, byMailbox)!;
}

/**
 * The mail of the scope's contacts by id, whatever address it went to (a contact's address
 * changes; its mail from before stays its own): the timeline's two links (contacts/README.md),
 * message_contacts for 1:1 and synced mail, the ledger for campaign mail.
 */
function messagesOfContacts(scope: ResolvedScope): SQL | undefined {
  if (scope.resolvedContactIds.length === 0) return undefined;
  const ids = sql`${pgArray(scope.resolvedContactIds)}::uuid[]`;
  // `= any(array(…))`, here and in sendScope: beside the address rule in an OR, an `in (subquery)`
  // is a filter on every row of the workspace; an array is an index condition (a BitmapOr).
  return sql`${messages.id} = any(array(
    select mc.message_id from message_contacts mc where mc.contact_id = any(${ids}) and mc.workspace_id = ${scope.workspaceId}::uuid
    union all
    select s.message_id from campaign_sends s where s.contact_id = any(${ids}) and s.workspace_id = ${scope.workspaceId}::uuid and s.message_id is not null))`;
}

function messageScope(scope: ResolvedScope): SQL {
  const involves = aboutPeople(scope, (addresses) => {
    const list = pgArray(addresses);
    // The index of every message's bare addresses (migration 0047) finds the candidates; the exact
    // rule (an address as written, not inside `Name <…>`) decides, as it always did.
    const named = sql`(${messageBareAddresses(messages)} && ${list}::text[]
      and (lower(${messages.fromAddress}) = any(${list}::text[]) or exists (select 1 from unnest(${messages.toAddresses} || ${messages.ccAddresses} || ${messages.bccAddresses}) as a(address) where lower(a.address) = any(${list}::text[]))))`;
    return or(named, messagesOfContacts(scope))!;
  });
  const byMailbox = scope.mailboxIds.length === 0 ? undefined : inUuidList(messages.mailboxId, scope.mailboxIds);
  return and(eq(messages.workspaceId, scope.workspaceId), both(involves, byMailbox))!;
}

function sendScope(scope: ResolvedScope): SQL {
  // Through the address's recipient row (indexed by address) and the ledger's index led by it;
  // lower(campaign_sends.email) has no index, and alone it read every send of the workspace.
  // Or by the contact's id (campaign_sends_contact_idx): its sends from before an address change.
  const byPeople = aboutPeople(scope, (addresses) =>
    or(
      sql`(${campaignSends.recipientId} = any(array(select ${recipients.id} from ${recipients} where ${recipients.workspaceId} = ${scope.workspaceId} and ${addressIn(recipients.email, addresses)}))
        and ${addressIn(campaignSends.email, addresses)})`,
      scope.resolvedContactIds.length === 0 ? undefined : inUuidList(campaignSends.contactId, scope.resolvedContactIds),
    )!,
  );
  const byMailbox =
    scope.mailboxIds.length === 0
      ? undefined
      : sql`${campaignSends.campaignId} in (select ${campaigns.id} from ${campaigns} where ${campaigns.workspaceId} = ${scope.workspaceId} and ${inUuidList(campaigns.mailboxId, scope.mailboxIds)})`;
  return and(eq(campaignSends.workspaceId, scope.workspaceId), both(byPeople, byMailbox))!;
}

export function createSubjectDataRepo(db: Db) {
  return {
    /** The contacts named by id or address (a handful): with their addresses, the rest of the scope is known. */
    async resolve(scope: SubjectScope): Promise<{ scope: ResolvedScope; contacts: ContactRecord[] }> {
      const named = or(
        scope.contactIds.length === 0 ? undefined : inUuidList(contacts.id, scope.contactIds),
        scope.addresses.length === 0 ? undefined : addressIn(contacts.email, scope.addresses),
      );
      const found = named
        ? await db
            .select(contactRecordColumns)
            .from(contacts)
            .where(and(eq(contacts.workspaceId, scope.workspaceId), named))
            .orderBy(asc(contacts.id))
        : [];
      // Their addresses now and those their campaign mail went to before an address change, but
      // not one another live contact holds now: that is the other person's (contact-addresses.ts).
      const known = await addressesKnownBy(db, scope.workspaceId, found.map((c) => c.id));
      const addresses = [
        ...new Set([...scope.addresses, ...found.map((c) => c.email.toLowerCase()), ...known.filter((k) => !k.heldByAnother).map((k) => k.address)]),
      ];
      const namesPeople = scope.namesPeople ?? scope.addresses.length + scope.contactIds.length > 0;
      return { scope: { ...scope, addresses, namesPeople, resolvedContactIds: found.map((c) => c.id) }, contacts: found };
    },

    consents(scope: ResolvedScope) {
      const where = and(eq(consents.workspaceId, scope.workspaceId), inUuidList(consents.contactId, scope.resolvedContactIds), within(consents.at, scope));
      return keysetRows(db, consents, { id: consents.id, contactId: consents.contactId, status: consents.status, source: consents.source, policyVersion: consents.policyVersion, actor: consents.actor, at: consents.at }, where);
    },

    /** Message metadata (bodies are never stored; Gmail content is not exported). */
    /**
     * `readerUserId`: subjects only of mail that person sent or that is in their mailbox
     * (gmail-guard.ts subjectSeenBy); null: none (an API key reads no content); without it,
     * every subject (a legal disclosure).
     */
    messages(scope: ResolvedScope, readerUserId?: string | null) {
      const columns =
        readerUserId === undefined ? messageMetadata : { ...messageMetadata, subject: readerUserId === null ? sql<null>`null::text`.as('subject') : subjectSeenBy(readerUserId) };
      return keysetRows(db, messages, columns, and(messageScope(scope), within(messages.at, scope)));
    },

    /** Replies, bounces and delays about the messages in scope (and, when people are named, about them). */
    mailEvents(scope: ResolvedScope) {
      const aboutThem = aboutPeople(scope, (addresses) => or(sql`${mailEvents.recipient} is null`, addressIn(mailEvents.recipient, addresses))!);
      const where = and(
        eq(mailEvents.workspaceId, scope.workspaceId),
        sql`${mailEvents.messageId} in (select ${messages.id} from ${messages} where ${messageScope(scope)})`,
        aboutThem,
        within(mailEvents.at, scope),
      );
      return keysetRows(db, mailEvents, { id: mailEvents.id, messageId: mailEvents.messageId, type: mailEvents.type, recipient: mailEvents.recipient, detail: mailEvents.detail, at: mailEvents.at }, where);
    },

    /** The campaign send ledger's rows for them. */
    campaignSends(scope: ResolvedScope) {
      return keysetRows(db, campaignSends, {
        id: campaignSends.id,
        campaignId: campaignSends.campaignId,
        step: campaignSends.step,
        contactId: campaignSends.contactId,
        email: campaignSends.email,
        status: campaignSends.status,
        skipReason: campaignSends.skipReason,
        rfc822MessageId: campaignSends.rfc822MessageId,
        sentAt: campaignSends.sentAt,
        createdAt: campaignSends.createdAt,
      }, and(sendScope(scope), within(sql`coalesce(${campaignSends.sentAt}, ${campaignSends.createdAt})`, scope)));
    },

    /** Opens and clicks with their verdicts; raw IP and user agent only while retention keeps them (P-14). */
    trackingEvents(scope: ResolvedScope) {
      const where = and(
        eq(trackingEvents.workspaceId, scope.workspaceId),
        sql`${trackingEvents.sendId} in (select ${campaignSends.id} from ${campaignSends} where ${sendScope(scope)})`,
        within(trackingEvents.at, scope),
      );
      return keysetRows(db, trackingEvents, {
        id: trackingEvents.id,
        campaignId: trackingEvents.campaignId,
        sendId: trackingEvents.sendId,
        type: trackingEvents.type,
        linkIndex: trackingEvents.linkIndex,
        at: trackingEvents.at,
        method: trackingEvents.method,
        ip: trackingEvents.ip,
        userAgent: trackingEvents.userAgent,
        classification: trackingEvents.classification,
        reasons: trackingEvents.reasons,
      }, where);
    },

    suppressions(scope: ResolvedScope) {
      const where = and(eq(suppressions.workspaceId, scope.workspaceId), addressIn(suppressions.email, scope.addresses), within(suppressions.createdAt, scope));
      return keysetRows(db, suppressions, { id: suppressions.id, email: suppressions.email, scope: suppressions.scope, reason: suppressions.reason, source: suppressions.source, createdAt: suppressions.createdAt }, where);
    },

    recordAudit: (entry: AuditEntry) => recordAudit(db, entry),
  };
}

export interface ContactRecord {
  id: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  attributes: Record<string, unknown>;
  trackingRefusedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export type SubjectDataRepo = ReturnType<typeof createSubjectDataRepo>;
