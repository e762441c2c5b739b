import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { CampaignSendRow } from './campaign-send-index.js';
import type { Classification, HitType } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { writeEvents } from './events.repo.js';
import { eventColumnsOf } from './event-columns.js';
import { rollUpPending, type RollupPassResult } from './rollups.repo.js';

export { pgArray };

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
  /** Which mail of the sequence: 0 the first, 1 the first follow-up … */
  step: number;
}

export interface LinkRow {
  campaignId: string;
  linkIndex: number;
  url: string;
  honeypot: boolean;
  /** The steps whose mail holds the link; null: every step (the honeypot, rows written before migration 0057). */
  steps: readonly number[] | null;
}

/** An int[] column: an array from PGlite and pg alike (a `{0,1}` literal read too, should a driver leave it text). */
const toSteps = (value: unknown): number[] | null =>
  Array.isArray(value) ? value.map(Number) : typeof value === 'string' ? value.replace(/[{}]/g, '').split(',').filter(Boolean).map(Number) : null;

const toDate = (value: unknown): Date | null => (value === null || value === undefined ? null : value instanceof Date ? value : new Date(String(value)));

/** `singleConnection`: an embedded database (PGlite), whose one connection serializes writers by itself. */
export function createTrackingRepo(db: Db, options: { singleConnection?: boolean } = {}) {
  return {
    /** A send and its campaign's links in one indexed query (the click path on a cache miss). */
    async findSendWithLinks(sendId: string): Promise<{ send: SendRow; links: LinkRow[] } | undefined> {
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select s.id, s.workspace_id, s.campaign_id, s.sent_at, s.claimed_at, s.step, l.link_index, l.url, l.honeypot, l.steps
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
        step: Number(first.step),
      };
      const links = rows
        .filter((r) => r.link_index !== null && r.link_index !== undefined)
        .map((r) => ({ campaignId: send.campaignId, linkIndex: Number(r.link_index), url: String(r.url), honeypot: Boolean(r.honeypot), steps: toSteps(r.steps) }));
      return { send, links };
    },

    async findSends(sendIds: readonly string[]): Promise<SendRow[]> {
      if (sendIds.length === 0) return [];
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select id, workspace_id, campaign_id, sent_at, claimed_at, step from campaign_sends
          where id = any(${pgArray(sendIds)}::uuid[])`),
      );
      return rows.map((r) => ({
        id: String(r.id),
        workspaceId: String(r.workspace_id),
        campaignId: String(r.campaign_id),
        sentAt: toDate(r.sent_at),
        claimedAt: toDate(r.claimed_at),
        step: Number(r.step),
      }));
    },

    /** Every send of a campaign (the outage index, campaign-send-index.ts): id, workspace, step, sent or claim time. */
    async findCampaignSends(campaignId: string): Promise<CampaignSendRow[]> {
      const rows = rowsOf<{ id: string; workspace_id: string; step: number; at_ms: number | string | null }>(
        await db.execute(sql`
          select id, workspace_id, step, round(extract(epoch from coalesce(sent_at, claimed_at)) * 1000)::float8 as at_ms
          from campaign_sends where campaign_id = ${campaignId}`),
      );
      return rows.map((r) => ({ id: String(r.id), workspaceId: String(r.workspace_id), step: Number(r.step), sentAtMs: r.at_ms === null ? null : Number(r.at_ms) }));
    },

    async findLinks(campaignIds: readonly string[]): Promise<LinkRow[]> {
      if (campaignIds.length === 0) return [];
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select campaign_id, link_index, url, honeypot, steps from campaign_links
          where campaign_id = any(${pgArray(campaignIds)}::uuid[])`),
      );
      return rows.map((r) => ({ campaignId: String(r.campaign_id), linkIndex: Number(r.link_index), url: String(r.url), honeypot: Boolean(r.honeypot), steps: toSteps(r.steps) }));
    },

    /**
     * One statement per batch: the events (ids chosen when the batch was first prepared and kept
     * for its retries, so a retried batch inserts nothing twice), their webhook outbox rows and their pending rollup record
     * (events.repo.ts). Hits of recipients who refused tracking are only counted
     * (untracked-hits.ts); they count as written. The stats follow in the rollup pass.
     */
    insertEvents(events: readonly TrackingEventRow[]): Promise<number> {
      return writeEvents(db, eventColumnsOf(events));
    },

    /** One rollup pass over the oldest pending records, up to `maxEvents` events (rollups.repo.ts). */
    rollUpPending(maxEvents?: number): Promise<RollupPassResult> {
      return rollUpPending(db, { singleConnection: options.singleConnection, maxEvents });
    },

    /** Events written and not rolled up yet (the metrics gauge). */
    async pendingRollupEvents(): Promise<number> {
      const [row] = rowsOf<{ n: number }>(await db.execute(sql`select coalesce(sum(events), 0)::int as n from tracking_rollup_pending`));
      return Number(row?.n ?? 0);
    },
  };
}

export type TrackingRepo = ReturnType<typeof createTrackingRepo>;
