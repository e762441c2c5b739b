import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification, HitType } from './classify.js';

/** One row of tracking_events, as the writer inserts it. */
export interface TrackingEventRow {
  /** Chosen here, so that a retried batch that did land the first time is not inserted twice. */
  id: string;
  workspaceId: string;
  campaignId: string;
  sendId: string;
  type: HitType;
  linkIndex: number | null;
  atMs: number;
  method: string;
  ip: string | null;
  userAgent: string | null;
  classification: Classification;
  reasons: readonly string[];
}

export interface SendRow {
  id: string;
  workspaceId: string;
  campaignId: string;
  sentAt: Date | null;
  claimedAt: Date | null;
}

export interface LinkRow {
  campaignId: string;
  linkIndex: number;
  url: string;
  honeypot: boolean;
}

type Rows<T> = { rows: T[] };
const rowsOf = <T>(result: unknown): T[] => (result as Rows<T>).rows;
const toDate = (value: unknown): Date | null => (value === null || value === undefined ? null : value instanceof Date ? value : new Date(String(value)));

/**
 * A Postgres array literal (`{"a","b",NULL}`) for one text parameter: a batch of any size
 * is then a dozen parameters (insert … select from unnest), instead of one per value.
 */
export function pgArray(values: readonly (string | number | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i += 1) {
    if (i > 0) out += ',';
    const value = values[i];
    if (value === null || value === undefined) out += 'NULL';
    else if (typeof value === 'number') out += String(value);
    else out += `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  }
  return `${out}}`;
}

export function createTrackingRepo(db: Db) {
  return {
    /** A send and its campaign's links in one indexed query (the click path on a cache miss). */
    async findSendWithLinks(sendId: string): Promise<{ send: SendRow; links: LinkRow[] } | undefined> {
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select s.id, s.workspace_id, s.campaign_id, s.sent_at, s.claimed_at, l.link_index, l.url, l.honeypot
          from campaign_sends s left join campaign_links l on l.campaign_id = s.campaign_id
          where s.id = ${sendId}`),
      );
      const first = rows[0];
      if (!first) return undefined;
      const send: SendRow = {
        id: String(first.id),
        workspaceId: String(first.workspace_id),
        campaignId: String(first.campaign_id),
        sentAt: toDate(first.sent_at),
        claimedAt: toDate(first.claimed_at),
      };
      const links = rows
        .filter((r) => r.link_index !== null && r.link_index !== undefined)
        .map((r) => ({ campaignId: send.campaignId, linkIndex: Number(r.link_index), url: String(r.url), honeypot: Boolean(r.honeypot) }));
      return { send, links };
    },

    async findSends(sendIds: readonly string[]): Promise<SendRow[]> {
      if (sendIds.length === 0) return [];
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select id, workspace_id, campaign_id, sent_at, claimed_at from campaign_sends
          where id = any(${pgArray(sendIds)}::uuid[])`),
      );
      return rows.map((r) => ({
        id: String(r.id),
        workspaceId: String(r.workspace_id),
        campaignId: String(r.campaign_id),
        sentAt: toDate(r.sent_at),
        claimedAt: toDate(r.claimed_at),
      }));
    },

    async findLinks(campaignIds: readonly string[]): Promise<LinkRow[]> {
      if (campaignIds.length === 0) return [];
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select campaign_id, link_index, url, honeypot from campaign_links
          where campaign_id = any(${pgArray(campaignIds)}::uuid[])`),
      );
      return rows.map((r) => ({ campaignId: String(r.campaign_id), linkIndex: Number(r.link_index), url: String(r.url), honeypot: Boolean(r.honeypot) }));
    },

    /** One statement per batch; ids make a retried batch idempotent. */
    async insertEvents(events: readonly TrackingEventRow[]): Promise<void> {
      if (events.length === 0) return;
      const column = <T extends string | number | null>(pick: (e: TrackingEventRow) => T) => pgArray(events.map(pick));
      await db.execute(sql`
        insert into tracking_events (id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons)
        select id, workspace_id, campaign_id, send_id, type::tracking_event_type, link_index, to_timestamp(at_ms / 1000.0), method, ip, user_agent,
               classification::hit_classification, string_to_array(reasons, ',')
        from unnest(
          ${column((e) => e.id)}::uuid[], ${column((e) => e.workspaceId)}::uuid[], ${column((e) => e.campaignId)}::uuid[],
          ${column((e) => e.sendId)}::uuid[], ${column((e) => e.type)}::text[], ${column((e) => e.linkIndex)}::int[],
          ${column((e) => e.atMs)}::float8[], ${column((e) => e.method)}::text[], ${column((e) => e.ip)}::text[],
          ${column((e) => e.userAgent)}::text[], ${column((e) => e.classification)}::text[], ${column((e) => e.reasons.join(','))}::text[]
        ) as u(id, workspace_id, campaign_id, send_id, type, link_index, at_ms, method, ip, user_agent, classification, reasons)
        on conflict (id) do nothing`);
    },
  };
}

export type TrackingRepo = ReturnType<typeof createTrackingRepo>;
