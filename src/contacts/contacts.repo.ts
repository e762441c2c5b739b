import { and, desc, eq, getTableColumns, ilike, isNull, sql, type SQL } from 'drizzle-orm';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { RECIPIENT_ACTOR } from '../auth/actor.js';
import type { AddressHasher } from '../suppression/address-hash.js';
import { inUuidList } from '../db/sql-lists.js';
import { cursorTimestamp, olderThanCursor, type PageCursor } from '../http/cursor.js';
import { inTransaction, type Db } from '../db/connect.js';
import { lockAddressChange, lockAddressesWithTheirContacts, lockContactAddress, underAddressLock } from '../suppression/address-lock.js';
import { appendConsent, endWithdrawnSequences, latestConsentSql, newestConsentFirst, type ConsentRow, type ConsentValues } from './consent-records.js';
import { isUniqueViolation, sqlStateOf } from '../db/pg-errors.js';
import { CUSTOM_PLAN } from '../db/plan-hints.js';
import { campaignSends, consents, contacts, contactSearchText, mailboxes, mailEvents, messageContacts, messages, type ConsentStatus } from '../db/schema.js';
import { importedConsentChangedCtes } from '../webhooks/facts.js';
import { rowsOf } from '../db/pg-array.js';
import { MAX_CONTACT_ATTRIBUTES, TIMELINE_ENTRIES } from './contact-columns.js';

export type ContactRow = typeof contacts.$inferSelect;
export type { ConsentRow };

export interface ContactFields {
  email: string;
  firstName: string | null;
  lastName: string | null;
  attributes: Record<string, unknown>;
}

export interface ImportedContact {
  email: string;
  firstName?: string;
  lastName?: string;
  attributes: Record<string, string>;
}

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);
/**
 * A search first filters the newest contacts, four pages' worth and at least 200 (`list`): each
 * costs a buffer or so, read one by one (a page of 50: about 200 buffers, 0.5 ms on a server,
 * 6 ms on a loaded PGlite), whatever the workspace's size; a text on a quarter of them fills its page.
 */
const searchWalk = (limit: number) => Math.max(200, 4 * limit);

/** A contact as every API sees it: of the workspace, and not deleted (P-13: gone at once). */
const visible = (workspaceId: string) => and(eq(contacts.workspaceId, workspaceId), isNull(contacts.deletedAt))!;

function contactQueries(db: Db, hashAddress: AddressHasher) {
  return {
    async findById(workspaceId: string, id: string): Promise<ContactRow | undefined> {
      const [row] = await db
        .select()
        .from(contacts)
        .where(and(visible(workspaceId), eq(contacts.id, id)))
        .limit(1);
      return row;
    },

    /**
     * Newest first, keyset-paginated on (created_at, id). `search` is a substring, any case, of
     * "first last address" (contactSearchText), found in two steps (below) because the planner
     * cannot tell a text common in this workspace from one common only in others: it judges by
     * every workspace's statistics, and for a surname common elsewhere but rare here it walked
     * the whole workspace newest first (BENCHMARKS.md, "Contact search across workspaces").
     */
    async list(workspaceId: string, options: { limit: number; before?: PageCursor; search?: string }) {
      const conditions = [visible(workspaceId)];
      if (options.before) conditions.push(olderThanCursor(contacts.createdAt, contacts.id, options.before));
      const page = (where: SQL | undefined) =>
        db
          .select({ ...getTableColumns(contacts), cursorAt: cursorTimestamp(contacts.createdAt) })
          .from(contacts)
          .where(where)
          .orderBy(desc(contacts.createdAt), desc(contacts.id))
          .limit(options.limit);
      if (!options.search) return page(and(...conditions));
      const pattern = `%${escapeLike(options.search)}%`;
      const matches = ilike(contactSearchText(contacts), pattern);
      // 1. The newest contacts (searchWalk), read once and filtered: a text common in the workspace fills its page here.
      const newest = db
        .select({ ...getTableColumns(contacts), cursorAt: cursorTimestamp(contacts.createdAt).as('cursor_at') })
        .from(contacts)
        .where(and(...conditions))
        .orderBy(desc(contacts.createdAt), desc(contacts.id))
        .limit(searchWalk(options.limit))
        .as('newest');
      const walked = await db
        .select()
        .from(newest)
        .where(ilike(contactSearchText(newest), pattern))
        .orderBy(desc(newest.createdAt), desc(newest.id))
        .limit(options.limit);
      if (walked.length === options.limit) return walked;
      // 2. Else every match in the workspace, by the index of the workspace and the trigrams
      // (migration 0052): a materialized list without order or limit, which the planner reads by
      // that index rather than the walk; its newest page, and those rows — in one statement, so
      // one snapshot (in two, a contact deleted or renamed in between cut the page short, which
      // ends the client's paging, or showed a non-match: an attacker's finding). Planned for its
      // text (CUSTOM_PLAN).
      const newestMatches = sql`${sql.raw(CUSTOM_PLAN)} ${contacts.id} in (
        with found as materialized (select ${contacts.id} as id, ${contacts.createdAt} as created_at from ${contacts} where ${and(...conditions, matches)})
        select id from found order by created_at desc, id desc limit ${options.limit})`;
      return page(and(visible(workspaceId), newestMatches));
    },

    /** Returns undefined when the address already belongs to a contact of the workspace. */
    async insert(workspaceId: string, fields: ContactFields): Promise<ContactRow | undefined> {
      try {
        const [row] = await db.insert(contacts).values({ workspaceId, ...fields, addressHash: hashAddress(fields.email) }).returning();
        return row;
      } catch (error) {
        if (isUniqueViolation(error)) return undefined;
        throw error;
      }
    },

    /**
     * Returns 'conflict' when the new address belongs to another contact, 'busy' when a launch
     * in progress kept the change waiting too long. A new address (not the same in another case)
     * is written under the locks of an address change (suppression/address-lock.ts
     * lockAddressChange: launches in progress, opt-outs and sends of the old and the new address);
     * the same address, as a client sending the whole record back writes it, takes none.
     */
    async update(workspaceId: string, id: string, fields: Partial<ContactFields>): Promise<ContactRow | undefined | 'conflict' | 'busy'> {
      const write = async (tx: Db, onlyIf?: SQL) => {
        const [row] = await tx
          .update(contacts)
          .set({ ...fields, ...(fields.email ? { addressHash: hashAddress(fields.email) } : {}), updatedAt: new Date() })
          .where(and(visible(workspaceId), eq(contacts.id, id), onlyIf))
          .returning();
        return row;
      };
      const email = fields.email;
      try {
        if (!email) return await write(db);
        // Only while its address is the same (any case); else, or gone, the locked way.
        const unchanged = await write(db, eq(sql`lower(${contacts.email})`, email.toLowerCase()));
        return unchanged ?? (await underAddressLock(db, (tx) => lockAddressChange(tx, workspaceId, id, email), (tx) => write(tx)));
      } catch (error) {
        if (isUniqueViolation(error)) return 'conflict';
        if (sqlStateOf(error) === '55P03') return 'busy';
        throw error;
      }
    },

    /**
     * P-13: marks the contact deleted (hidden at once) and when the purge removes it; false if there
     * was none to delete. In the caller's transaction, under the contact's address locks (as an opt-out): a send claim
     * holding them either committed first or, after this commits, finds the contact deleted.
     * Without them a claim whose statement began before the delete and waited on a send's row lock
     * claimed after the delete had answered, and the mail went out (an attacker's finding).
     */
    async markDeleted(workspaceId: string, id: string, at: Date, purgeAfter: Date): Promise<boolean> {
      await lockContactAddress(db, id, workspaceId);
      const deleted = await db
        .update(contacts)
        .set({ deletedAt: at, purgeAfter })
        .where(and(visible(workspaceId), eq(contacts.id, id)))
        .returning({ id: contacts.id });
      return deleted.length > 0;
    },

    audit: (entry: AuditEntry) => recordAudit(db, entry),

    /**
     * Inserts or merges a batch of imported rows keyed on the address (case-insensitive).
     * Names given overwrite, names left blank keep what was there, attributes merge.
     * Rows that would change nothing are not touched, so re-importing a file is a no-op.
     */
    /**
     * Writes a batch of imported rows: new addresses are created, known ones merged (a name the
     * row leaves empty is kept, attributes are added to). A row that would grow its contact past
     * MAX_CONTACT_ATTRIBUTES is refused whole and its address returned, as PATCH refuses it.
     */
    async upsertImported(workspaceId: string, rows: ImportedContact[]): Promise<{ created: number; updated: number; refused: string[] }> {
      if (rows.length === 0) return { created: 0, updated: 0, refused: [] };
      const values = sql.join(
        rows.map(
          (r) =>
            sql`(${workspaceId}::uuid, ${r.email}, ${hashAddress(r.email)}, ${r.firstName ?? null}, ${r.lastName ?? null}, ${JSON.stringify(r.attributes)}::jsonb)`,
        ),
        sql`, `,
      );
      const keyCount = (json: SQL) => sql`(select count(*) from jsonb_object_keys(${json}))`;
      const result = rowsOf<{ outcome: 'created' | 'updated' | 'refused'; email: string }>(
        await db.execute(sql`
          with given (workspace_id, email, address_hash, first_name, last_name, attributes) as (values ${values}),
          refused as (
            select g.email from given g
            join contacts c on c.workspace_id = g.workspace_id and lower(c.email) = lower(g.email) and c.deleted_at is null
            where ${keyCount(sql`c.attributes || g.attributes`)} > greatest(${MAX_CONTACT_ATTRIBUTES}, ${keyCount(sql`c.attributes`)})
          ),
          upserted as (
            insert into contacts as c (workspace_id, email, address_hash, first_name, last_name, attributes)
            select * from given where email not in (select email from refused)
            on conflict (workspace_id, lower(email)) where deleted_at is null do update set
              first_name = coalesce(excluded.first_name, c.first_name),
              last_name = coalesce(excluded.last_name, c.last_name),
              attributes = c.attributes || excluded.attributes,
              updated_at = now()
            where (c.first_name, c.last_name, c.attributes) is distinct from
                  (coalesce(excluded.first_name, c.first_name), coalesce(excluded.last_name, c.last_name), c.attributes || excluded.attributes)
            returning (xmax = 0) as inserted, email
          )
          select case when inserted then 'created' else 'updated' end as outcome, email from upserted
          union all
          select 'refused', email from refused`),
      );
      const count = (outcome: string) => result.filter((r) => r.outcome === outcome).length;
      return { created: count('created'), updated: count('updated'), refused: result.filter((r) => r.outcome === 'refused').map((r) => r.email) };
    },

    /**
     * Appends the consents an import gives, by address, in one transaction under the address
     * locks (an imported opt-out serializes with a send's claim, invariant 1). Skips a row whose
     * status is already the contact's latest, and one recorded before with the same status and
     * time (a re-import of a dated consent). Returns how many records were appended. Each one
     * that became its contact's consent is a `consent.changed` webhook event, as from the API.
     */
    async recordImportedConsents(
      workspaceId: string,
      rows: { email: string; status: ConsentStatus; source: string; at: Date | null }[],
      by: { policyVersion: string; actor: string },
    ): Promise<{ appended: number; optOutsKept: number }> {
      if (rows.length === 0) return { appended: 0, optOutsKept: 0 };
      const values = sql.join(
        rows.map((r) => sql`(${r.email}, ${r.status}::consent_status, ${r.source}, ${r.at ? r.at.toISOString() : null}::timestamptz)`),
        sql`, `,
      );
      return db.transaction(async (tx) => {
        await lockAddressesWithTheirContacts(tx as unknown as Db, workspaceId, rows.map((r) => r.email));
        // The webhook events commit with the records they report (same statement).
        const [result] = rowsOf<{ appended: number; opt_outs_kept: number; withdrawn: string[] | null }>(
          await tx.execute(sql`
            with given as materialized (
              select c.workspace_id, c.id as contact_id, v.status, v.source, v.at, latest.status as latest_status,
                     -- A recipient's own opt-out (the unsubscribe link, the preference center) is theirs to
                     -- undo: a file saying "opted in", perhaps exported before they left, does not.
                     coalesce(v.status = 'opted_in' and latest.status = 'opted_out' and latest.actor = ${RECIPIENT_ACTOR}, false) as recipients_opt_out
              -- Never later than now: a time a few minutes ahead (clock skew, allowed by the
              -- import) would otherwise outrank a withdrawal recorded in those minutes.
              from (select email, status, source, least(coalesce(at, clock_timestamp()), clock_timestamp()) as at
                    from (values ${values}) as given(email, status, source, at)) v
              join contacts c on c.workspace_id = ${workspaceId}::uuid and lower(c.email) = lower(v.email) and c.deleted_at is null
              left join lateral (${latestConsentSql(sql`c.workspace_id`, sql`c.id`, sql`cs.status, cs.actor`)}) latest on true
            ),
            appended as (
              insert into consents (workspace_id, contact_id, status, source, policy_version, actor, at)
              select g.workspace_id, g.contact_id, g.status, g.source, ${by.policyVersion}, ${by.actor}, g.at
              from given g
              where g.status is distinct from g.latest_status and not g.recipients_opt_out
                and not exists (
                  select 1 from consents d where d.workspace_id = g.workspace_id and d.contact_id = g.contact_id and d.status = g.status and d.at = g.at)
              returning id, workspace_id, contact_id, status, source, at, seq
            ),
            -- Every consent record is evidence (POLICY.md "Evidence"): the compliance report reads it here.
            consent_audit as (
              insert into audit_log (workspace_id, actor, action, subject_type, subject_id, detail)
              select workspace_id, ${by.actor}, 'consent.recorded', 'contact', contact_id::text,
                     jsonb_build_object('consentId', id, 'status', status, 'source', source, 'policyVersion', ${by.policyVersion}::text)
              from appended
            )${importedConsentChangedCtes()}
            select (select count(*)::int from appended) as appended, (select count(*)::int from given where recipients_opt_out) as opt_outs_kept,
                   array(select distinct contact_id::text from appended where status = 'opted_out') as withdrawn`),
        );
        // The batch's withdrawals end the follow-ups they stop, in one statement, after the address locks (consent-records.ts).
        await endWithdrawnSequences(tx as unknown as Db, workspaceId, (result!.withdrawn ?? []).map(String));
        return { appended: result!.appended, optOutsKept: result!.opt_outs_kept };
      });
    },

    /** consent-records.ts: under the contact's opt-out locks, with its audit row and webhook event. */
    appendConsent: (values: ConsentValues, audit: { actor: string; requestId?: string | null }) => appendConsent(db, values, audit),

    /**
     * A page of the contact's consent history, newest first (the order that decides the latest:
     * `at`, then `seq`), along the index `consents_latest_idx`. The cursor names a record by its
     * time and id; the next page starts below that record's (at, seq). Should retention have
     * deleted it meanwhile, below its time and any seq: a record of that very instant may show
     * twice, none is lost.
     */
    async listConsents(workspaceId: string, contactId: string, page: { limit: number; before?: PageCursor }): Promise<(ConsentRow & { cursorAt: string })[]> {
      const after = page.before
        ? sql`(${consents.at}, ${consents.seq}) < (${page.before.createdAt}::timestamptz,
              coalesce((select c.seq from consents c where c.id = ${page.before.id}::uuid and c.contact_id = ${contactId}::uuid), 9223372036854775807))`
        : undefined;
      return db
        .select({ ...getTableColumns(consents), cursorAt: cursorTimestamp(consents.at) })
        .from(consents)
        .where(and(eq(consents.contactId, contactId), eq(consents.workspaceId, workspaceId), after))
        .orderBy(newestConsentFirst())
        .limit(page.limit);
    },

    /**
     * Messages involving the contact, with the user who owns each one's mailbox (for P-03
     * visibility). Two links name them: `message_contacts` (1:1 mail and synced mail, and
     * campaign sends claimed before migration 0035) and the campaign ledger (`contact_id` →
     * `message_id`, set at the claim), each one index probe by the contact.
     */
    async listMessagesOfContact(workspaceId: string, contactId: string) {
      return db
        .select({
          id: messages.id,
          direction: messages.direction,
          status: messages.status,
          subject: messages.subject,
          fromAddress: messages.fromAddress,
          toAddresses: messages.toAddresses,
          ccAddresses: messages.ccAddresses,
          at: messages.at,
          sentBy: messages.sentBy,
          mailboxOwner: mailboxes.userId,
          // reply | auto_reply | bounce (kind hard|soft) | delay, with the status a notice gave:
          // this contact's only — its address now, or the one its campaign mail went to — never
          // another recipient's (a Cc's bounce, or a Bcc's, which would also reveal them).
          events: sql<{ type: string; at: string; kind: string | null; status: string | null }[]>`coalesce((
            select json_agg(json_build_object('type', ${mailEvents.type}, 'at', ${mailEvents.at},
              'kind', ${mailEvents.detail} ->> 'kind', 'status', ${mailEvents.detail} ->> 'status') order by ${mailEvents.at})
            from ${mailEvents} where ${mailEvents.messageId} = ${messages.id}
              and (${mailEvents.recipient} is null or lower(${mailEvents.recipient}) in (
                select lower(c.email) from contacts c where c.id = ${contactId}::uuid
                union all
                select lower(s.email) from campaign_sends s where s.message_id = ${messages.id} and s.contact_id = ${contactId}::uuid))), '[]'::json)`,
        })
        .from(messages)
        .leftJoin(mailboxes, eq(mailboxes.id, messages.mailboxId))
        .where(
          and(
            eq(messages.workspaceId, workspaceId),
            sql`${messages.id} in (
              select ${messageContacts.messageId} from ${messageContacts}
              where ${messageContacts.workspaceId} = ${workspaceId}::uuid and ${messageContacts.contactId} = ${contactId}::uuid
              union all
              select ${campaignSends.messageId} from ${campaignSends}
              where ${campaignSends.contactId} = ${contactId}::uuid and ${campaignSends.workspaceId} = ${workspaceId}::uuid and ${campaignSends.messageId} is not null)`,
          ),
        )
        .orderBy(desc(messages.at))
        .limit(TIMELINE_ENTRIES);
    },

    /** The latest record per contact: that is each contact's consent (P-11). */
    async latestConsents(workspaceId: string, contactIds: string[]): Promise<Map<string, ConsentRow>> {
      if (contactIds.length === 0) return new Map();
      const rows = await db
        .selectDistinctOn([consents.contactId])
        .from(consents)
        .where(and(eq(consents.workspaceId, workspaceId), inUuidList(consents.contactId, contactIds)))
        .orderBy(consents.contactId, newestConsentFirst());
      return new Map(rows.map((row) => [row.contactId, row]));
    },
  };
}

export type ContactsQueries = ReturnType<typeof contactQueries>;

/** The queries, plus `transaction` to run several of them atomically. */
export function createContactsRepo(db: Db, hashAddress: AddressHasher) {
  return { ...contactQueries(db, hashAddress), transaction: inTransaction(db, (tx) => contactQueries(tx, hashAddress)) };
}

export type ContactsRepo = ReturnType<typeof createContactsRepo>;
