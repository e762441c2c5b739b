import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import type { TrackingEventRow } from './tracking.repo.js';

/*
 * Hits from recipients who refused tracking (preference center, contacts.tracking_refused_at).
 * Their new mail carries no pixel and no tracked link, but mail sent before they asked still
 * does. Such a hit is still answered as usual (the pixel, the redirect: invariant 4); at
 * write time, inside the event writer's transaction, it is taken out of the batch and only
 * counted per campaign and type in `untracked_hit_counts`: no event row, no IP, no user agent,
 * no per-recipient rollup. A batch retried after a lost acknowledgement may count its
 * diverted hits twice (they have no row whose id could say they landed); the count is an
 * approximate total by design.
 */

/** The batch without the hits of recipients who refused tracking, which are counted instead. */
export async function divertUntrackedHits(tx: Db, events: readonly TrackingEventRow[]): Promise<TrackingEventRow[]> {
  if (events.length === 0) return [];
  const sendIds = [...new Set(events.map((e) => e.sendId))];
  const refused = rowsOf<{ id: string }>(
    await tx.execute(sql`
      select s.id from campaign_sends s
      join contacts c on c.workspace_id = s.workspace_id and lower(c.email) = lower(s.email)
      where s.id = any(${pgArray(sendIds)}::uuid[]) and c.tracking_refused_at is not null`),
  );
  if (refused.length === 0) return [...events];
  const untracked = new Set(refused.map((r) => String(r.id)));
  const counts = new Map<string, { workspaceId: string; campaignId: string; type: string; hits: number }>();
  const kept: TrackingEventRow[] = [];
  for (const event of events) {
    if (!untracked.has(event.sendId)) {
      kept.push(event);
      continue;
    }
    const key = `${event.campaignId}:${event.type}`;
    const entry = counts.get(key) ?? { workspaceId: event.workspaceId, campaignId: event.campaignId, type: event.type, hits: 0 };
    entry.hits += 1;
    counts.set(key, entry);
  }
  // Sorted by key, like the rollups: concurrent writers take row locks in one order.
  const rows = [...counts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  await tx.execute(sql`
    insert into untracked_hit_counts (workspace_id, campaign_id, type, hits)
    select w, c, t::tracking_event_type, h from unnest(
      ${pgArray(rows.map((r) => r.workspaceId))}::uuid[], ${pgArray(rows.map((r) => r.campaignId))}::uuid[],
      ${pgArray(rows.map((r) => r.type))}::text[], ${pgArray(rows.map((r) => r.hits))}::bigint[]) as u(w, c, t, h)
    on conflict (campaign_id, type, workspace_id) do update set hits = untracked_hit_counts.hits + excluded.hits`);
  return kept;
}
