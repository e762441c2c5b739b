import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/*
 * A campaign's sends by state, read from `campaign_send_counts`: counters the database keeps
 * in the very statement that changes the ledger (statement-level triggers, migration 0018),
 * so a read is a handful of rows whatever the audience, and the counts cannot drift from the
 * ledger across crashes or processes. `recountFromLedger` is what they must always equal
 * (tests and the stats benchmark compare the two).
 */

export const SEND_STATES = ['queued', 'sending', 'sent', 'failed', 'skipped'] as const;
export type SendState = (typeof SEND_STATES)[number];

export interface SendCounts {
  counts: Record<SendState, number>;
  /** Skipped sends by reason. */
  skippedBecause: Record<string, number>;
}

function toSendCounts(rows: { status: SendState; skip_reason: string | null; n: number | string }[]): SendCounts {
  const counts = Object.fromEntries(SEND_STATES.map((s) => [s, 0])) as Record<SendState, number>;
  const skippedBecause: Record<string, number> = {};
  for (const row of rows) {
    const n = Number(row.n);
    if (n === 0) continue;
    counts[row.status] += n;
    if (row.status === 'skipped') skippedBecause[row.skip_reason ?? ''] = (skippedBecause[row.skip_reason ?? ''] ?? 0) + n;
  }
  return { counts, skippedBecause };
}

const inWorkspace = (workspaceId?: string) => (workspaceId === undefined ? sql`` : sql` and workspace_id = ${workspaceId}`);

/** Scoped by campaign, and by workspace when the caller has it (a few rows of the counters' primary key). */
export async function readSendCounts(db: Db, campaignId: string, workspaceId?: string): Promise<SendCounts> {
  return toSendCounts(
    rowsOf(
      await db.execute(sql`
        select status::text as status, skip_reason, sum(n)::bigint as n from campaign_send_counts
        where campaign_id = ${campaignId}${inWorkspace(workspaceId)}
        group by status, skip_reason`),
    ),
  );
}

/** SQL: how many of the campaign's sends are in these states, from the counters (a few rows). */
const sendsInSql = (campaignId: string | SQL, states: SQL) =>
  sql`coalesce((select sum(n) from campaign_send_counts where campaign_id = ${campaignId} and status in ${states}), 0)`;

/**
 * SQL: how many of the campaign's sends are still queued or in flight — the worker asks it of
 * every sending campaign each tick (campaigns.repo `completeIfDone`). `campaignId` may be a
 * column (cancelled-sends.repo.ts asks it of every campaign still being skipped).
 */
export const unfinishedSendsSql = (campaignId: string | SQL) => sendsInSql(campaignId, sql`('queued', 'sending')`);

/** SQL: how many of the campaign's sends are queued. */
export const queuedSendsSql = (campaignId: string | SQL) => sendsInSql(campaignId, sql`('queued')`);

/** The same numbers counted over the ledger: a scan of the campaign's sends. */
export async function recountSendsFromLedger(db: Db, campaignId: string, workspaceId?: string): Promise<SendCounts> {
  return toSendCounts(
    rowsOf(
      await db.execute(sql`
        select status::text as status, coalesce(skip_reason, '') as skip_reason, count(*)::int as n from campaign_sends
        where campaign_id = ${campaignId}${inWorkspace(workspaceId)}
        group by status, coalesce(skip_reason, '')`),
    ),
  );
}
