import { and, asc, desc, eq, getTableColumns, inArray, isNull, sql } from 'drizzle-orm';
import { cursorTimestamp, olderThanCursor, type PageCursor } from '../http/cursor.js';
import { inTransaction, type Db } from '../db/connect.js';
import { ANALYZE_THRESHOLD } from '../db/embedded-maintenance.js';
import { inUuidList } from '../db/sql-lists.js';
import { contactMergeColumns, contactRecipientColumns } from '../contacts/contact-columns.js';
import {
  campaignLinks,
  campaigns,
  contacts,
  workspaces,
} from '../db/schema.js';
import { audienceWhere, firstStepSql, preflightCountsSql } from './audience-sql.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { GENERIC_PLAN } from '../db/plan-hints.js';
import { readSendCounts, unfinishedSendsSql } from './send-counts.repo.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import { holdAddressChanges } from '../suppression/address-lock.js';
import { MAILBOX_PAUSES } from './mailbox-hold.js';
import { campaignStatusChangedCtes, recordCampaignStatusChanged } from '../webhooks/facts.js';

export type CampaignRow = typeof campaigns.$inferSelect;
export type NewCampaign = typeof campaigns.$inferInsert;
/** A follow-up's (recipient, step) and the send of its step before: what threads the follow-up. */
export interface EarlierSend {
  recipientId: string;
  /** The follow-up's step (the earlier send's is one less). */
  step: number;
  rfc822MessageId: string;
  gmailThreadId: string | null;
}



/** completeIfDone's advisory lock class ('cplt'): a key space of its own. */
const COMPLETION_LOCK_CLASS = 0x63706c74; // 'cplt'

/**
 * Sending campaigns with nothing queued or in flight become `completed` (with their
 * `campaign.status_changed` events). The worker asks it of every sending campaign each tick
 * (the repo method below, in a transaction of its own); sync asks it when a reply, a bounce or a
 * suppression skipped recipients' follow-ups (follow-ups.repo.ts), and a requeue that wrote its
 * send skipped (requeue-unless-refused.ts), in their transactions. The repo method below says why
 * it reads the counters.
 *
 * In a transaction, two statements: a lock of the campaign's completion question is taken first
 * (a transaction-scoped advisory lock per campaign, in key order), and only then does a new
 * statement ask what is left. Asked in the one UPDATE alone, the question was read from the
 * statement's snapshot, taken before any lock: two transactions that each finished the last rows
 * the other had not committed yet (two last replies at once) each still counted the other's row,
 * and neither completed the campaign, which stayed `sending` until a worker's tick. Now the second
 * waits for the first's lock, and under READ COMMITTED its new statement sees what the first
 * committed.
 *
 * Not the campaign's row: its callers have written the ledger (and so the counters' rows of
 * their slot) before they ask, and the gate holds the row (its share lock, gate-sql.ts) before it
 * writes the counters. Locked whenever it was asked, a reply beside a claim of the same campaign
 * on the same counter slot deadlocked (40P01), with sends still queued and nothing to complete.
 * The row is updated only when the campaign completes — nothing queued or in flight, so no claim
 * of it is writing — as it was before. Only callers of this take this lock.
 */
export async function completeIfDone(tx: Db, campaignIds: readonly string[], at: Date): Promise<void> {
  if (campaignIds.length === 0) return;
  const ids = sql`${pgArray([...campaignIds])}::uuid[]`;
  await tx.execute(sql`
    select pg_advisory_xact_lock(${COMPLETION_LOCK_CLASS}::int, h) from (select distinct hashtext(id::text) as h from unnest(${ids}) id order by 1) l`);
  await tx.execute(sql`
    with done as (
      update campaigns set status = 'completed', completed_at = ${at.toISOString()}::timestamptz, updated_at = now()
      where id = any(${ids}) and status = 'sending'
        and ${unfinishedSendsSql(sql`campaigns.id`)} = 0
      returning id, workspace_id)${campaignStatusChangedCtes('sending', 'completed')}
    select 1`);
}

function campaignQueries(db: Db) {
  async function byId(workspaceId: string, id: string, deleted: 'hidden' | 'included'): Promise<CampaignRow | undefined> {
    const [row] = await db
      .select()
      .from(campaigns)
      .where(and(eq(campaigns.workspaceId, workspaceId), eq(campaigns.id, id), deleted === 'hidden' ? isNull(campaigns.deletedAt) : undefined))
      .limit(1);
    return row;
  }

  return {
    async insert(values: NewCampaign): Promise<CampaignRow> {
      const [row] = await db.insert(campaigns).values(values).returning();
      return row!;
    },

    findById: (workspaceId: string, id: string) => byId(workspaceId, id, 'hidden'),

    /**
     * Also a campaign deleted but not yet purged (P-13): for work that must finish whatever the
     * campaign's fate, such as resolving a send that was in flight when it was deleted.
     */
    findByIdIncludingDeleted: (workspaceId: string, id: string) => byId(workspaceId, id, 'included'),

    /** Newest first, keyset-paginated on (created_at, id) like the contacts (http/cursor.ts). */
    async list(workspaceId: string, options: { limit: number; before?: PageCursor }) {
      return db
        .select({ ...getTableColumns(campaigns), cursorAt: cursorTimestamp(campaigns.createdAt) })
        .from(campaigns)
        .where(and(eq(campaigns.workspaceId, workspaceId), isNull(campaigns.deletedAt), options.before ? olderThanCursor(campaigns.createdAt, campaigns.id, options.before) : undefined))
        .orderBy(desc(campaigns.createdAt), desc(campaigns.id))
        .limit(options.limit);
    },

    /**
     * Locks a live campaign's row for its deletion (undefined: gone). Taken before anything else,
     * so a launch in flight commits first (and the deletion then sees it scheduled and cancels it)
     * or waits and then finds the campaign deleted (transition: live campaigns only).
     */
    async lockForDeletion(workspaceId: string, id: string): Promise<boolean> {
      const rows = await db
        .select({ id: campaigns.id })
        .from(campaigns)
        .where(and(eq(campaigns.workspaceId, workspaceId), eq(campaigns.id, id), isNull(campaigns.deletedAt)))
        .for('update');
      return rows.length > 0;
    },

    /** P-13: hidden at once, purged after `purgeAfter`; false if it was already gone. */
    async markDeleted(workspaceId: string, id: string, at: Date, purgeAfter: Date): Promise<boolean> {
      const rows = await db
        .update(campaigns)
        .set({ deletedAt: at, purgeAfter, updatedAt: at })
        .where(and(eq(campaigns.workspaceId, workspaceId), eq(campaigns.id, id), isNull(campaigns.deletedAt)))
        .returning({ id: campaigns.id });
      return rows.length > 0;
    },

    audit: (entry: AuditEntry) => recordAudit(db, entry),

    /**
     * Changes a campaign only while it is a live draft: an edit that lost a race with its launch
     * or its deletion (committed between the caller's read and this write) changes nothing (undefined).
     */
    async updateDraft(id: string, values: Partial<NewCampaign>): Promise<CampaignRow | undefined> {
      const [row] = await db
        .update(campaigns)
        .set({ ...values, updatedAt: new Date() })
        .where(and(eq(campaigns.id, id), eq(campaigns.status, 'draft'), isNull(campaigns.deletedAt)))
        .returning();
      return row;
    },

    /**
     * Moves a live campaign between states only from the expected ones (a lost race changes nothing).
     * `unchanged`: the fields a caller checked before (a launch: the kind and the mailbox; the
     * worker lifting its own pause: the reason it read) must still hold, or nothing changes — an
     * edit, or a person's pause, committed in between.
     */
    async transition(
      id: string,
      from: CampaignRow['status'][],
      values: Partial<NewCampaign> & { status: CampaignRow['status'] },
      unchanged?: Partial<Pick<CampaignRow, 'kind' | 'mailboxId' | 'statusReason'>>,
    ) {
      // The state it leaves is read under the row lock, for the webhook event that commits with the change.
      return db.transaction(async (txRaw) => {
        const tx = txRaw as unknown as Db;
        const [before] = await tx
          .select({ status: campaigns.status })
          .from(campaigns)
          .where(
            and(
              eq(campaigns.id, id),
              inArray(campaigns.status, from),
              // A deleted campaign never changes state again (a launch racing its deletion must not send).
              isNull(campaigns.deletedAt),
              unchanged?.kind !== undefined ? eq(campaigns.kind, unchanged.kind) : undefined,
              unchanged?.mailboxId !== undefined ? (unchanged.mailboxId === null ? isNull(campaigns.mailboxId) : eq(campaigns.mailboxId, unchanged.mailboxId)) : undefined,
              unchanged?.statusReason ? eq(campaigns.statusReason, unchanged.statusReason) : undefined,
            ),
          )
          .for('update');
        if (!before) return undefined;
        const [row] = await tx
          .update(campaigns)
          .set({ ...values, updatedAt: new Date() })
          .where(eq(campaigns.id, id))
          .returning();
        if (row) await recordCampaignStatusChanged(tx, { workspaceId: row.workspaceId, campaignId: row.id, from: before.status, to: row.status });
        return row;
      });
    },

    async replaceLinks(campaign: { id: string; workspaceId: string }, links: { url: string; honeypot: boolean; steps: number[] | null }[]) {
      await db.delete(campaignLinks).where(eq(campaignLinks.campaignId, campaign.id));
      if (links.length > 0) {
        await db.insert(campaignLinks).values(links.map((l, linkIndex) => ({ workspaceId: campaign.workspaceId, campaignId: campaign.id, linkIndex, ...l })));
      }
    },

    async linksOf(campaignId: string) {
      return db.select().from(campaignLinks).where(eq(campaignLinks.campaignId, campaignId)).orderBy(asc(campaignLinks.linkIndex));
    },

    /** Attribute names any contact of the workspace has: the merge fields a template may use. */
    async knownAttributes(workspaceId: string): Promise<Set<string>> {
      const result = await db.execute(sql`select distinct jsonb_object_keys(attributes) as key from contacts where workspace_id = ${workspaceId} and deleted_at is null`);
      return new Set(rowsOf<{ key: string }>(result).map((r) => r.key));
    },

    /** Contact ids of these addresses (case-insensitive), in chunks so a large file stays one query per thousand. */
    async contactIdsByEmails(workspaceId: string, emails: string[]): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < emails.length; i += 1000) {
        const chunk = emails.slice(i, i + 1000).map((e) => e.toLowerCase());
        const rows = await db
          .select({ id: contacts.id })
          .from(contacts)
          .where(and(eq(contacts.workspaceId, workspaceId), inArray(sql`lower(${contacts.email})`, chunk), isNull(contacts.deletedAt)));
        ids.push(...rows.map((r) => r.id));
      }
      return ids;
    },

    async countContacts(workspaceId: string, ids: string[]): Promise<number> {
      if (ids.length === 0) return 0;
      const [row] = await db
        .select({ n: sql<number>`count(*)::int` })
        .from(contacts)
        .where(audienceWhere(workspaceId, { contactIds: ids }));
      return Number(row?.n ?? 0);
    },

    /**
     * Eligible / suppressed / missing consent / invalid, computed in the database over the whole
     * audience (audience-sql.ts). JIT compilation is switched off for it: the plan is one index
     * probe per contact, which JIT cannot speed up, and at 100k contacts its estimated cost
     * makes a server spend ~0.9 s compiling (measured, BENCHMARKS.md).
     */
    async preflightCounts(campaign: CampaignRow) {
      const row = await db.transaction(async (tx) => {
        await tx.execute(sql`set local jit = off`);
        return rowsOf<{ total: number; invalid: number; suppressed: number; missing_consent: number }>(await tx.execute(preflightCountsSql(campaign)))[0]!;
      });
      const total = Number(row.total);
      const [invalid, suppressed, missingConsent] = [Number(row.invalid), Number(row.suppressed), Number(row.missing_consent)];
      return { total, eligible: total - invalid - suppressed - missingConsent, suppressed, missingConsent, invalid };
    },

    async sampleContact(campaign: CampaignRow) {
      const [row] = await db.select().from(contacts).where(audienceWhere(campaign.workspaceId, campaign.audience)).orderBy(asc(contacts.createdAt)).limit(1);
      return row;
    },

    /**
     * Writes the first step's ledger rows for the whole audience in two statements
     * (audience-sql.ts), without loading the audience into memory. Each row gets its own
     * Message-ID now, before any attempt.
     */
    async materializeFirstStep(campaign: CampaignRow, senderDomain: string, dueAt: Date): Promise<number> {
      const statements = firstStepSql(campaign, senderDomain, dueAt);
      // No contact's address changes between the two statements (address-lock.ts): in the launch's transaction.
      await holdAddressChanges(db, campaign.workspaceId);
      await db.execute(statements.recipients);
      return Number(rowsOf<{ n: number }>(await db.execute(statements.sends))[0]!.n);
    },

    /**
     * ANALYZE of the ledger after a launch that wrote more rows than autovacuum's threshold for
     * the table's last analysed size (a never-analysed ledger counts as empty). Until statistics
     * show the new rows, the planner believes the campaign has one queued row and each batch's
     * reservation reads and sorts all of them through (campaign_id, status, due_at) instead of
     * taking 500 from the front of the queued index: measured on the server right after a
     * 100,000 launch, 66–70 ms and a sort spilled to disk a batch, against about 6 ms analysed
     * (BENCHMARKS.md, thirteenth pass). A server's autovacuum gets there within a minute when it
     * is free, hours later when its workers are busy with large tables; PGlite's
     * `embedded-analyze` job every 10 minutes. ANALYZE reads a sample of at most 30,000 rows,
     * so its cost stops growing with the ledger (a review measured 170 ms at 100,000 rows and
     * 315 ms at 1,000,000 on the server, ~200 ms on PGlite, against 7–39 s for the launch's
     * inserts). The service's role owns the tables it migrated, so it may. True when it was due.
     */
    async analyzeLedgerAfterLaunch(written: number): Promise<boolean> {
      const [stats] = rowsOf<{ tuples: number }>(
        await db.execute(sql`select greatest(reltuples, 0)::float8 as tuples from pg_class where oid = 'campaign_sends'::regclass`),
      );
      if (written <= ANALYZE_THRESHOLD.rows + ANALYZE_THRESHOLD.fraction * Number(stats?.tuples ?? 0)) return false;
      // SKIP_LOCKED: an ANALYZE or VACUUM already running on the ledger (autovacuum's, another
      // launch's) holds the lock this one needs; waiting for a long vacuum would hold the launch's
      // answer, and the one running gives the planner its statistics anyway (a plain VACUUM aside).
      await db.execute(sql`analyze (skip_locked) campaign_sends`);
      return true;
    },

    async contactInWorkspace(workspaceId: string, id: string) {
      const [row] = await db
        .select(contactMergeColumns)
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), eq(contacts.id, id)))
        .limit(1);
      return row;
    },

    async contactsForMerge(ids: string[]) {
      if (ids.length === 0) return [];
      return db
        .select(contactRecipientColumns)
        .from(contacts)
        .where(inUuidList(contacts.id, ids));
    },

    async postalAddressOf(workspaceId: string): Promise<string | null> {
      const [row] = await db.select({ postalAddress: workspaces.postalAddress }).from(workspaces).where(eq(workspaces.id, workspaceId)).limit(1);
      return row?.postalAddress ?? null;
    },

    /**
     * A sending campaign with nothing queued or in flight is done (later steps are queued rows,
     * so they count). Asked every worker tick of every sending campaign, so it reads the
     * ledger's counters (send-counts.repo.ts: they commit with every change of the ledger), a
     * few rows: a `not exists` over the ledger was read sequentially up to the campaign's first
     * queued row — its sent step and other campaigns' rows stored before — each tick while a
     * next step waited (BENCHMARKS.md, "ninth pass").
     */
    completeIfDone: (campaignId: string, at: Date) => db.transaction((tx) => completeIfDone(tx as unknown as Db, [campaignId], at)),

    /**
     * For each follow-up of a batch, its recipient's send of the step before (what threads it:
     * the Message-ID it answers, the Gmail thread it joins), in one statement for the whole batch
     * instead of one per message (issue #14). One probe of the ledger's key (recipient, campaign,
     * step) per follow-up: the lateral subquery with its `limit` is run per row of the list, so
     * the campaign's ledger is never read whole, whatever its size or statistics. The lists are
     * bound as one array parameter each (an audience can exceed the 65,535 parameters a statement carries).
     * A follow-up whose earlier send is missing has no row.
     */
    async earlierSends(campaignId: string, followUps: readonly { recipientId: string; step: number }[]): Promise<EarlierSend[]> {
      if (followUps.length === 0) return [];
      const rows = rowsOf<{ recipient_id: string; step: number; rfc822_message_id: string; gmail_thread_id: string | null }>(
        await db.execute(sql`${sql.raw(GENERIC_PLAN)} select f.recipient_id, f.step, p.rfc822_message_id, p.gmail_thread_id
          from unnest(${pgArray(followUps.map((f) => f.recipientId))}::uuid[], ${pgArray(followUps.map((f) => f.step))}::int[]) as f(recipient_id, step)
          cross join lateral (
            select p.rfc822_message_id, p.gmail_thread_id from campaign_sends p
            where p.recipient_id = f.recipient_id and p.campaign_id = ${campaignId} and p.step = f.step - 1
            limit 1) p`),
      );
      return rows.map((r) => ({ recipientId: r.recipient_id, step: Number(r.step), rfc822MessageId: r.rfc822_message_id, gmailThreadId: r.gmail_thread_id }));
    },

    /** Campaigns the worker should look at: sending, or scheduled and due to start. */
    async activeCampaigns(now: Date): Promise<CampaignRow[]> {
      return db
        .select()
        .from(campaigns)
        .where(sql`${campaigns.status} = 'sending' or (${campaigns.status} = 'scheduled' and coalesce(${campaigns.startAt}, now()) <= ${now.toISOString()}::timestamptz)`);
    },

    /** Campaigns the send worker paused for their mailbox (mailbox-hold.ts), which it resumes itself. */
    async pausedForMailbox(): Promise<CampaignRow[]> {
      return db.select().from(campaigns).where(and(eq(campaigns.status, 'paused'), inArray(campaigns.statusReason, [...MAILBOX_PAUSES])));
    },

    /** Counts by state from the ledger's counters, and the next due send (one index probe). */
    async progress(campaignId: string) {
      const { counts } = await readSendCounts(db, campaignId);
      const [row] = rowsOf<{ next_due: string | Date | null }>(
        await db.execute(sql`select min(due_at) as next_due from campaign_sends where campaign_id = ${campaignId} and status = 'queued'`),
      );
      return { counts, nextDueAt: row?.next_due ? new Date(row.next_due) : null };
    },

    async skipReasons(campaignId: string): Promise<Record<string, number>> {
      return (await readSendCounts(db, campaignId)).skippedBecause;
    },
  };
}

export type CampaignQueries = ReturnType<typeof campaignQueries>;

export function createCampaignsRepo(db: Db) {
  return { ...campaignQueries(db), transaction: inTransaction(db, campaignQueries) };
}

export type CampaignsRepo = ReturnType<typeof createCampaignsRepo>;
