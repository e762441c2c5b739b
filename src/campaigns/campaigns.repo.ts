import { and, asc, desc, eq, inArray, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { inUuidList } from '../db/sql-lists.js';
import {
  campaignLinks,
  campaigns,
  campaignSends,
  contacts,
  workspaces,
} from '../db/schema.js';
import { audienceWhere, firstStepSql, preflightCountsSql } from './audience-sql.js';
import { rowsOf } from '../db/pg-array.js';

export type CampaignRow = typeof campaigns.$inferSelect;
export type NewCampaign = typeof campaigns.$inferInsert;
export type SendRow = typeof campaignSends.$inferSelect;



function campaignQueries(db: Db) {
  return {
    async insert(values: NewCampaign): Promise<CampaignRow> {
      const [row] = await db.insert(campaigns).values(values).returning();
      return row!;
    },

    async findById(workspaceId: string, id: string): Promise<CampaignRow | undefined> {
      const [row] = await db
        .select()
        .from(campaigns)
        .where(and(eq(campaigns.workspaceId, workspaceId), eq(campaigns.id, id)))
        .limit(1);
      return row;
    },

    async list(workspaceId: string): Promise<CampaignRow[]> {
      return db.select().from(campaigns).where(eq(campaigns.workspaceId, workspaceId)).orderBy(desc(campaigns.createdAt)).limit(200);
    },

    async update(id: string, values: Partial<NewCampaign>): Promise<CampaignRow | undefined> {
      const [row] = await db
        .update(campaigns)
        .set({ ...values, updatedAt: new Date() })
        .where(eq(campaigns.id, id))
        .returning();
      return row;
    },

    /** Moves a campaign between states only from the expected ones (a lost race changes nothing). */
    async transition(id: string, from: CampaignRow['status'][], values: Partial<NewCampaign> & { status: CampaignRow['status'] }) {
      const [row] = await db
        .update(campaigns)
        .set({ ...values, updatedAt: new Date() })
        .where(and(eq(campaigns.id, id), inArray(campaigns.status, from)))
        .returning();
      return row;
    },

    async replaceLinks(campaign: { id: string; workspaceId: string }, links: { url: string; honeypot: boolean }[]) {
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
      const result = await db.execute(sql`select distinct jsonb_object_keys(attributes) as key from contacts where workspace_id = ${workspaceId}`);
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
          .where(and(eq(contacts.workspaceId, workspaceId), inArray(sql`lower(${contacts.email})`, chunk)));
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
      await db.execute(statements.recipients);
      return Number(rowsOf<{ n: number }>(await db.execute(statements.sends))[0]!.n);
    },

    async contactInWorkspace(workspaceId: string, id: string) {
      const [row] = await db
        .select({ id: contacts.id, email: contacts.email, firstName: contacts.firstName, lastName: contacts.lastName, attributes: contacts.attributes })
        .from(contacts)
        .where(and(eq(contacts.workspaceId, workspaceId), eq(contacts.id, id)))
        .limit(1);
      return row;
    },

    async contactsForMerge(ids: string[]) {
      if (ids.length === 0) return [];
      return db
        .select({ id: contacts.id, email: contacts.email, firstName: contacts.firstName, lastName: contacts.lastName, attributes: contacts.attributes })
        .from(contacts)
        .where(inUuidList(contacts.id, ids));
    },

    async postalAddressOf(workspaceId: string): Promise<string | null> {
      const [row] = await db.select({ postalAddress: workspaces.postalAddress }).from(workspaces).where(eq(workspaces.id, workspaceId)).limit(1);
      return row?.postalAddress ?? null;
    },

    /** A sending campaign with nothing queued or in flight is done (later steps are queued rows, so they count). */
    async completeIfDone(campaignId: string, at: Date) {
      await db.execute(sql`
        update campaigns set status = 'completed', completed_at = ${at.toISOString()}::timestamptz, updated_at = now()
        where id = ${campaignId} and status = 'sending'
          and not exists (select 1 from campaign_sends where campaign_id = ${campaignId} and status in ('queued', 'sending'))`);
    },

    /** The earlier step's send to this recipient: its thread and Message-ID carry the follow-up. */
    async previousStep(campaignId: string, recipientId: string, step: number): Promise<SendRow | undefined> {
      const [row] = await db
        .select()
        .from(campaignSends)
        .where(and(eq(campaignSends.campaignId, campaignId), eq(campaignSends.recipientId, recipientId), eq(campaignSends.step, step - 1)))
        .limit(1);
      return row;
    },

    /** Campaigns the worker should look at: sending, or scheduled and due to start. */
    async activeCampaigns(now: Date): Promise<CampaignRow[]> {
      return db
        .select()
        .from(campaigns)
        .where(sql`${campaigns.status} = 'sending' or (${campaigns.status} = 'scheduled' and coalesce(${campaigns.startAt}, now()) <= ${now.toISOString()}::timestamptz)`);
    },

    async pausedForReconnect(): Promise<CampaignRow[]> {
      return db.select().from(campaigns).where(and(eq(campaigns.status, 'paused'), eq(campaigns.statusReason, 'mailbox_needs_reconnect')));
    },

    async progress(campaignId: string) {
      const result = await db.execute(sql`
        select status, count(*)::int as n, min(due_at) filter (where status = 'queued') as next_due
        from campaign_sends where campaign_id = ${campaignId} group by status`);
      const counts = { queued: 0, sending: 0, sent: 0, failed: 0, skipped: 0 };
      let nextDueAt: Date | null = null;
      for (const row of rowsOf<{ status: keyof typeof counts; n: number; next_due: string | Date | null }>(result)) {
        counts[row.status] = Number(row.n);
        if (row.next_due) nextDueAt = new Date(row.next_due);
      }
      return { counts, nextDueAt };
    },

    async skipReasons(campaignId: string): Promise<Record<string, number>> {
      const result = await db.execute(sql`
        select skip_reason, count(*)::int as n from campaign_sends where campaign_id = ${campaignId} and status = 'skipped' group by skip_reason`);
      return Object.fromEntries(rowsOf<{ skip_reason: string; n: number }>(result).map((r) => [r.skip_reason, Number(r.n)]));
    },

    /** Cancel: queued sends will never go out. */
    async skipQueued(campaignId: string, reason: string) {
      await db
        .update(campaignSends)
        .set({ status: 'skipped', skipReason: reason })
        .where(and(eq(campaignSends.campaignId, campaignId), eq(campaignSends.status, 'queued')));
    },
  };
}

export type CampaignQueries = ReturnType<typeof campaignQueries>;

export function createCampaignsRepo(db: Db) {
  return { ...campaignQueries(db), transaction: inTransaction(db, campaignQueries) };
}

export type CampaignsRepo = ReturnType<typeof createCampaignsRepo>;
