import { and, asc, desc, eq, inArray, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { inUuidList } from '../db/sql-lists.js';
import {
  campaignLinks,
  campaigns,
  campaignSends,
  contacts,
  mailboxes,
  messageContacts,
  messages,
  workspaces,
} from '../db/schema.js';
import { audienceWhere, firstStepSql, preflightCountsSql } from './audience-sql.js';
import { optedInSql, suppressedSql } from './eligibility-sql.js';

export type CampaignRow = typeof campaigns.$inferSelect;
export type NewCampaign = typeof campaigns.$inferInsert;
export type SendRow = typeof campaignSends.$inferSelect;

type Rows<T> = { rows: T[] };
const rowsOf = <T>(result: unknown) => (result as Rows<T>).rows;

export interface ClaimedSend {
  id: string;
  campaignId: string;
  step: number;
  contactId: string | null;
  recipientId: string;
  email: string;
  rfc822MessageId: string;
  messageRowId: string;
  attempts: number;
}

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

    /**
     * Claims up to `limit` due sends of one campaign. Inside this one transaction:
     * rows are locked (SKIP LOCKED: another worker takes others), suppression and consent are
     * re-checked (invariant 1, P-10 — a failing check fails the claim: nothing is sent),
     * later steps stop for recipients who replied or bounced, the skipped are marked
     * skipped with their reason, and the rest become `sending` with a `messages` row each.
     */
    async claimDue(campaign: CampaignRow, mailbox: { id: string; email: string }, limit: number, now: Date): Promise<ClaimedSend[]> {
      const candidates = rowsOf<{
        id: string;
        step: number;
        contact_id: string | null;
        recipient_id: string;
        email: string;
        rfc822_message_id: string;
        attempts: number;
        suppressed: boolean;
        opted_in: boolean;
        replied: boolean;
        bounced: boolean;
        contact_gone: boolean;
      }>(
        await db.execute(sql`
          select s.id, s.step, s.contact_id, s.recipient_id, s.email, s.rfc822_message_id, s.attempts,
            ${suppressedSql(sql`s.workspace_id`, sql`s.email`, campaign.topic)} as suppressed,
            ${optedInSql(sql`s.contact_id`)} as opted_in,
            exists (select 1 from campaign_sends p join mail_events e on e.message_id = p.message_id and e.type = 'reply'
                      and coalesce((e.detail ->> 'automatic')::boolean, false) = false
                    where p.campaign_id = s.campaign_id and p.recipient_id = s.recipient_id and p.step < s.step) as replied,
            exists (select 1 from campaign_sends p join mail_events e on e.message_id = p.message_id and e.type = 'bounce'
                    where p.campaign_id = s.campaign_id and p.recipient_id = s.recipient_id and p.step < s.step) as bounced,
            s.contact_id is null as contact_gone
          from campaign_sends s
          where s.campaign_id = ${campaign.id} and s.status = 'queued' and s.due_at <= ${now.toISOString()}::timestamptz
          order by s.due_at, s.id
          limit ${limit}
          for update of s skip locked`),
      );

      const claimed: ClaimedSend[] = [];
      const skips = new Map<string, string[]>();
      const skip = (reason: string, id: string) => skips.set(reason, [...(skips.get(reason) ?? []), id]);
      for (const row of candidates) {
        if (row.suppressed) skip('suppressed', row.id);
        else if (row.contact_gone) skip('contact_deleted', row.id);
        else if (campaign.kind === 'marketing' && !row.opted_in) skip('no_consent', row.id);
        else if (row.replied) skip('replied', row.id);
        else if (row.bounced) skip('bounced', row.id);
        else {
          claimed.push({
            id: row.id,
            campaignId: campaign.id,
            step: row.step,
            contactId: row.contact_id,
            recipientId: row.recipient_id,
            email: row.email,
            rfc822MessageId: row.rfc822_message_id,
            messageRowId: '',
            attempts: row.attempts + 1,
          });
        }
      }
      for (const [reason, ids] of skips) {
        await db.update(campaignSends).set({ status: 'skipped', skipReason: reason }).where(inArray(campaignSends.id, ids));
      }
      if (claimed.length === 0) return [];

      const inserted = await db
        .insert(messages)
        .values(
          claimed.map((c) => ({
            workspaceId: campaign.workspaceId,
            mailboxId: mailbox.id,
            direction: 'outbound' as const,
            status: 'sending' as const,
            rfc822MessageId: c.rfc822MessageId,
            subject: campaign.subject,
            fromAddress: mailbox.email,
            toAddresses: [c.email],
            sentBy: campaign.createdBy,
          })),
        )
        .returning({ id: messages.id, rfc822MessageId: messages.rfc822MessageId });
      const messageIdByRfc = new Map(inserted.map((m) => [m.rfc822MessageId, m.id]));
      for (const c of claimed) c.messageRowId = messageIdByRfc.get(c.rfc822MessageId)!;
      const links = claimed.filter((c) => c.contactId).map((c) => ({ messageId: c.messageRowId, contactId: c.contactId!, workspaceId: campaign.workspaceId }));
      if (links.length > 0) await db.insert(messageContacts).values(links).onConflictDoNothing();

      // One statement for the whole batch: each row gets its attempt count and messages row.
      await db.execute(sql`
        update campaign_sends s set status = 'sending', claimed_at = ${now.toISOString()}::timestamptz,
          attempts = v.attempts, message_id = v.message_id
        from (values ${sql.join(
          claimed.map((c) => sql`(${c.id}::uuid, ${c.attempts}::int, ${c.messageRowId}::uuid)`),
          sql`, `,
        )}) as v(id, attempts, message_id)
        where s.id = v.id`);
      return claimed;
    },

    /** The ledger row and its messages row, in one statement (atomic without a transaction). */
    async markSent(send: { id: string; messageRowId: string }, gmail: { id: string; threadId: string }, at: Date, subject: string) {
      await db.execute(sql`
        with ledger as (
          update campaign_sends set status = 'sent', gmail_message_id = ${gmail.id}, gmail_thread_id = ${gmail.threadId},
            sent_at = ${at.toISOString()}::timestamptz, error_code = null
          where id = ${send.id}::uuid returning id)
        update messages set status = 'sent', gmail_message_id = ${gmail.id}, gmail_thread_id = ${gmail.threadId},
          at = ${at.toISOString()}::timestamptz, subject = ${subject}
        where id = ${send.messageRowId}::uuid and exists (select 1 from ledger)`);
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

    /** Back to the queue (nothing went out): the messages row of the attempt goes away with it. */
    async requeue(send: { id: string; messageRowId: string }, dueAt: Date, errorCode: string) {
      await db.update(campaignSends).set({ status: 'queued', dueAt, errorCode, messageId: null }).where(eq(campaignSends.id, send.id));
      await db.delete(messages).where(eq(messages.id, send.messageRowId));
    },

    async markFailed(send: { id: string; messageRowId: string | null }, errorCode: string) {
      await db.update(campaignSends).set({ status: 'failed', errorCode }).where(eq(campaignSends.id, send.id));
      if (send.messageRowId) await db.update(messages).set({ status: 'failed', errorCode }).where(eq(messages.id, send.messageRowId));
    },

    /** Queues the next step for this recipient, due `afterDays` after this send, in the same thread. */
    async queueNextStep(campaign: CampaignRow, send: ClaimedSend, senderDomain: string, dueAt: Date) {
      await db.execute(sql`
        insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, due_at)
        values (${campaign.workspaceId}::uuid, ${campaign.id}::uuid, ${send.step + 1}, ${send.contactId}::uuid, ${send.recipientId}::uuid, ${send.email},
                gen_random_uuid()::text || '@' || ${senderDomain}, ${dueAt.toISOString()}::timestamptz)
        on conflict do nothing`);
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

    /** Sends left in `sending` longer than `olderThan` ago: a crash or a lost answer (invariant 3). */
    async stuckSends(olderThan: Date, limit = 100) {
      return db
        .select({ send: campaignSends, mailbox: mailboxes, campaign: campaigns })
        .from(campaignSends)
        .innerJoin(campaigns, eq(campaigns.id, campaignSends.campaignId))
        .leftJoin(mailboxes, eq(mailboxes.id, campaigns.mailboxId))
        .where(and(eq(campaignSends.status, 'sending'), sql`${campaignSends.claimedAt} < ${olderThan.toISOString()}::timestamptz`))
        .limit(limit);
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
