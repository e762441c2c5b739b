import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification, HitType } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { ALL_LINKS } from './rollups.js';
import { readSendCounts, recountSendsFromLedger } from '../campaigns/send-counts.repo.js';

/*
 * Campaign and contact numbers, every query scoped by workspace (invariant 7).
 *
 * The "later human click upgrades a machine open" rule is a reading, not a rewrite of
 * stored events: for a send with a human click, if no human open came before that click,
 * the latest machine/unknown open before it counts as human (a person who clicked did
 * open the message; one open, not every prefetch). The stored event keeps the verdict it
 * got when it arrived. Campaign stats read it from the rollups the event writer keeps
 * (rollups.ts); the recount from raw events and the contact timeline apply it here.
 */

export interface EventCountRow {
  type: HitType;
  /** null on the per-type totals. */
  linkIndex: number | null;
  /** True for the per-type totals (all links together), false for the per-link rows. */
  total: boolean;
  classification: Classification;
  events: number;
  recipients: number;
}

/**
 * Recipients with each kind of mail event on a campaign's messages. Reads only the campaign's
 * own mail events, each carrying its send's recipient (`mail_events_campaign_idx`, migration
 * 0021): the cost follows the campaign's bounces and replies, not its sends or the workspace's history.
 */
export const mailEventCountsQuery = (workspaceId: string, campaignId: string) => sql`
  select count(distinct recipient_id) filter (where type = 'bounce')::int as bounced,
         count(distinct recipient_id) filter (where type = 'bounce' and detail ->> 'kind' = 'hard')::int as "hardBounced",
         count(distinct recipient_id) filter (where type = 'bounce' and coalesce(detail ->> 'kind', 'soft') <> 'hard')::int as "softBounced",
         count(distinct recipient_id) filter (where type = 'delay')::int as delayed,
         count(distinct recipient_id) filter (where type = 'reply')::int as replied,
         count(distinct recipient_id) filter (where type = 'auto_reply')::int as "autoReplied"
  from mail_events
  where workspace_id = ${workspaceId} and campaign_id = ${campaignId}`;

export interface MailEventCounts {
  bounced: number;
  hardBounced: number;
  softBounced: number;
  delayed: number;
  /** A person answered: automatic replies are `autoReplied`, never here. */
  replied: number;
  autoReplied: number;
}

export interface TimelineEventRow {
  id: string;
  sendId: string;
  type: HitType;
  linkIndex: number | null;
  at: Date;
  classification: Classification;
  reasons: string[];
}

export function createStatsRepo(db: Db) {
  return {
    async campaignExists(workspaceId: string, campaignId: string): Promise<boolean> {
      const rows = rowsOf(await db.execute(sql`select 1 from campaigns where id = ${campaignId} and workspace_id = ${workspaceId} and deleted_at is null`));
      return rows.length > 0;
    },

    /** Sent and failed from the ledger's counters (src/campaigns/send-counts.repo.ts): a few rows, whatever the audience. */
    async sendCounts(workspaceId: string, campaignId: string): Promise<{ sent: number; failed: number }> {
      const { counts } = await readSendCounts(db, campaignId, workspaceId);
      return { sent: counts.sent, failed: counts.failed };
    },

    /** The same two numbers counted over the campaign's sends: the stats benchmark's baseline. */
    async sendCountsFromLedger(workspaceId: string, campaignId: string): Promise<{ sent: number; failed: number }> {
      const { counts } = await recountSendsFromLedger(db, campaignId, workspaceId);
      return { sent: counts.sent, failed: counts.failed };
    },

    /**
     * Recipients with each kind of mail event on this campaign's messages: a person's reply,
     * an automatic reply, a failed delivery (hard/soft), a delay (still being retried).
     * One index read of the campaign's own mail events (`mailEventCountsQuery`).
     */
    async mailEventCounts(workspaceId: string, campaignId: string): Promise<MailEventCounts> {
      const [row] = rowsOf<Record<keyof MailEventCounts, number>>(await db.execute(mailEventCountsQuery(workspaceId, campaignId)));
      const n = (key: keyof MailEventCounts) => Number(row?.[key] ?? 0);
      return { bounced: n('bounced'), hardBounced: n('hardBounced'), softBounced: n('softBounced'), delayed: n('delayed'), replied: n('replied'), autoReplied: n('autoReplied') };
    },

    /**
     * Addresses that unsubscribed from this campaign's mail (the opt-out pages record `campaign:<id>`
     * as the source). A purged person's entry keeps only its keyed hash, and still counts.
     */
    async unsubscribedCount(workspaceId: string, campaignId: string): Promise<number> {
      const [row] = rowsOf<{ n: number }>(
        await db.execute(sql`
          select count(distinct coalesce(lower(email), address_hash))::int as n from suppressions
          where workspace_id = ${workspaceId} and reason = 'unsubscribe' and source = ${`campaign:${campaignId}`}`),
      );
      return Number(row?.n ?? 0);
    },

    async links(campaignId: string): Promise<{ linkIndex: number; url: string; honeypot: boolean }[]> {
      const rows = rowsOf<{ link_index: number; url: string; honeypot: boolean }>(
        await db.execute(sql`select link_index, url, honeypot from campaign_links where campaign_id = ${campaignId} order by link_index`),
      );
      return rows.map((r) => ({ linkIndex: Number(r.link_index), url: String(r.url), honeypot: Boolean(r.honeypot) }));
    },

    /**
     * Events and distinct human recipients by type and judged classification, per campaign
     * and per link: a few rows of rollups (kept by the event writer, rollups.ts), whatever
     * the number of events.
     */
    async eventCounts(workspaceId: string, campaignId: string): Promise<EventCountRow[]> {
      const rows = rowsOf<{ type: HitType; link_index: number; human: number; machine: number; unknown: number; unique_human: number }>(
        await db.execute(sql`
          select type::text as type, link_index, human, machine, unknown, unique_human from tracking_rollups
          where workspace_id = ${workspaceId} and campaign_id = ${campaignId}`),
      );
      return rows.flatMap((r) => {
        const linkIndex = Number(r.link_index) === ALL_LINKS ? null : Number(r.link_index);
        const of = (classification: Classification, events: unknown, recipients: unknown): EventCountRow => ({ type: r.type, linkIndex, total: linkIndex === null, classification, events: Number(events), recipients: Number(recipients) });
        return [of('human', r.human, r.unique_human), of('machine', r.machine, 0), of('unknown', r.unknown, 0)];
      });
    },

    /**
     * The same numbers recounted from the raw events (a scan of the campaign's events): what
     * the rollups must always equal. Tests and the stats benchmark compare the two.
     */
    async eventCountsFromEvents(workspaceId: string, campaignId: string): Promise<EventCountRow[]> {
      const rows = rowsOf<{ type: HitType; link_index: number | null; total: number; cls: Classification; events: number; recipients: number }>(
        await db.execute(sql`
          with ev as (
            select e.id, e.type, e.link_index, e.send_id, e.at, e.classification::text as classification, s.recipient_id
            from tracking_events e
            join campaign_sends s on s.id = e.send_id and s.workspace_id = e.workspace_id
            where e.workspace_id = ${workspaceId} and e.campaign_id = ${campaignId}
          ),
          first_human_click as (
            select send_id, min(at) as at from ev where type = 'click' and classification = 'human' group by send_id
          ),
          upgraded as (
            select distinct on (o.send_id) o.id
            from ev o join first_human_click f on f.send_id = o.send_id
            where o.type = 'open' and o.classification <> 'human' and o.at <= f.at
              and not exists (select 1 from ev h where h.send_id = o.send_id and h.type = 'open' and h.classification = 'human' and h.at <= f.at)
            order by o.send_id, o.at desc, o.id desc
          ),
          judged as (
            select ev.type, ev.link_index, ev.recipient_id, case when u.id is not null then 'human' else ev.classification end as cls
            from ev left join upgraded u on u.id = ev.id
          )
          select type::text as type, link_index, grouping(link_index)::int as total, cls,
                 count(*)::int as events, count(distinct recipient_id)::int as recipients
          from judged
          group by grouping sets ((type, cls), (type, link_index, cls))`),
      );
      return rows.map((r) => ({
        type: r.type,
        linkIndex: r.link_index === null ? null : Number(r.link_index),
        total: Number(r.total) === 1,
        classification: r.cls,
        events: Number(r.events),
        recipients: Number(r.recipients),
      }));
    },

    /** A contact's campaign sends, newest first. */
    async sendsOfContact(workspaceId: string, contactId: string, limit = 200) {
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select s.id, s.campaign_id, c.name as campaign_name, s.step, s.status::text as status, s.sent_at, s.created_at
          from campaign_sends s join campaigns c on c.id = s.campaign_id and c.workspace_id = s.workspace_id and c.deleted_at is null
          where s.workspace_id = ${workspaceId} and s.contact_id = ${contactId}
          order by coalesce(s.sent_at, s.created_at) desc
          limit ${limit}`),
      );
      return rows.map((r) => ({
        sendId: String(r.id),
        campaignId: String(r.campaign_id),
        campaignName: String(r.campaign_name),
        step: Number(r.step),
        status: String(r.status),
        sentAt: r.sent_at ? new Date(r.sent_at as string | Date) : null,
        createdAt: new Date(r.created_at as string | Date),
      }));
    },

    async eventsOfSends(workspaceId: string, sendIds: string[]): Promise<TimelineEventRow[]> {
      if (sendIds.length === 0) return [];
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select id, send_id, type::text as type, link_index, at, classification::text as classification, reasons
          from tracking_events
          where workspace_id = ${workspaceId} and send_id = any(${pgArray(sendIds)}::uuid[])
          order by at, id`),
      );
      return rows.map((r) => ({
        id: String(r.id),
        sendId: String(r.send_id),
        type: r.type as HitType,
        linkIndex: r.link_index === null ? null : Number(r.link_index),
        at: new Date(r.at as string | Date),
        classification: r.classification as Classification,
        reasons: parseTextArray(r.reasons),
      }));
    },
  };
}

/** text[] arrives as a JS array from both drivers, but be tolerant of the literal form. */
function parseTextArray(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'string' && value.startsWith('{')) return value.slice(1, -1).split(',').filter(Boolean);
  return [];
}

export type StatsRepo = ReturnType<typeof createStatsRepo>;
