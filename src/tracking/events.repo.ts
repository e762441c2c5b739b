import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import type { EventColumns } from './event-columns.js';
import { trackingHitOutboxCtes } from '../webhooks/facts.js';
import { sendRefusedTracking, untrackedHitCountsCte } from './untracked-hits.js';

/*
 * The event writer's transaction: events only (issue 14). One statement a batch, its own
 * transaction — on PGlite each statement has a fixed cost, so everything shares it:
 *   - probe each hit's send (it must still exist: a hit on a send purged or deleted since
 *     its token was cached leaves nothing; and whether its address refused tracking:
 *     untracked-hits.ts) — one primary-key probe per hit, which takes `for key share` on the
 *     send (below);
 *   - count the refused hits (untracked_hit_counts);
 *   - insert the others `on conflict (id, at) do nothing` (the key of the partitioned table;
 *     the time fixed when the hit is answered, the id when its batch is first prepared; a retry
 *     keeps both) returning the rows actually inserted;
 *   - the webhook outbox rows of those rows;
 *   - one `tracking_rollup_pending` row per campaign of the batch with what the rollups need
 *     of those rows (compact arrays). Same statement, so events and their pending record
 *     commit together or not at all.
 * Why the probe locks the send (`for key share`): a purge (privacy/purge.repo.ts) deletes
 * the sends and then their events in one transaction. Without the lock, this statement could
 * see a send (its snapshot is older than the purge's commit) and commit its events (IP, user
 * agent) after the purge deleted that send's events: they would outlive the person. With it,
 * the purge locks the sends it deletes (`for update`) before it deletes any event, so either
 * this statement locked first — the purge waits for its commit, and its later statements
 * delete these events too — or the purge did — this probe waits for the purge, finds the send
 * gone (READ COMMITTED re-checks a row it waited for) and inserts nothing for it. Key share
 * conflicts only with deleting the send (or changing its key), never with the send pipeline's
 * status updates. The statement takes the batch in send id order, and purges lock in id
 * order: no deadlock.
 * No advisory lock, no rollup state read, no rollup written: the rollup pass
 * (rollups.repo.ts) does that later, over many batches at once. A batch whose ids were all
 * inserted already changes nothing (and adds no pending row).
 */

export const EVENT_COLUMNS = sql.raw('id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons');

/** The batch as rows for EVENT_COLUMNS (named like them): a dozen array parameters, whatever the batch size. */
export function selectEventsFromArrays(events: EventColumns) {
  const reasons = events.reasons.map((list) => list.join(','));
  return sql`
    select id, workspace_id, campaign_id, send_id, type::tracking_event_type as type, link_index, to_timestamp(at_ms / 1000.0) as at, method, ip, user_agent,
           classification::hit_classification as classification, string_to_array(reasons, ',') as reasons
    from unnest(
      ${pgArray(events.id)}::uuid[], ${pgArray(events.workspaceId)}::uuid[], ${pgArray(events.campaignId)}::uuid[],
      ${pgArray(events.sendId)}::uuid[], ${pgArray(events.type)}::text[], ${pgArray(events.linkIndex)}::int[],
      ${pgArray(events.atMs)}::float8[], ${pgArray(events.method)}::text[], ${pgArray(events.ip)}::text[],
      ${pgArray(events.userAgent)}::text[], ${pgArray(events.classification)}::text[], ${pgArray(reasons)}::text[]
    ) as u(id, workspace_id, campaign_id, send_id, type, link_index, at_ms, method, ip, user_agent, classification, reasons)`;
}

/** The write statement (above). One row: the refused hits counted and the events actually inserted. */
export function writeStatement(events: EventColumns) {
  // The data-modifying CTEs (untracked_counts, the webhook outbox, pending) need no reader:
  // PostgreSQL runs each exactly once, to completion, whether or not the final select reads it.
  return sql`
    -- In send id order (materialized so): the probe below locks the sends in the order of the
    -- batch, and purges lock theirs in id order too. Then by event id: two batches holding the
    -- same events (a retry beside its first try) insert them in one order, so neither waits on
    -- the other's uncommitted event while holding one the other waits on (a deadlock, 40P01,
    -- when events of one send came in either order). Sorted here, not on the answering thread.
    with batch as materialized (${selectEventsFromArrays(events)} order by send_id, id),
    src as (
      -- Lateral lookups with a limit: one primary-key probe per row, never a hash join over a whole table.
      select b.*, cs.contact_id, cs.email, cs.has_send is not null as has_send, coalesce(cs.untracked, false) as untracked
      from batch b
      left join lateral (
        select true as has_send, cs.contact_id, cs.email, ${sendRefusedTracking} as untracked
        from campaign_sends cs where cs.id = b.send_id and cs.workspace_id = b.workspace_id limit 1
        for key share of cs
      ) cs on true
    )${untrackedHitCountsCte('src')},
    ins as (
      -- A hit on a send that no longer exists (purged or deleted while its token was still in the
      -- send cache) leaves nothing: no IP, no user agent, no verdict of a person who is gone.
      insert into tracking_events (${EVENT_COLUMNS})
      select ${EVENT_COLUMNS} from src where has_send and not untracked
      on conflict (id, at) do nothing
      returning id, workspace_id, campaign_id, send_id, type, link_index, at, classification
    ),
    -- With the send's contact and address, for the webhook rows only: joined only when an endpoint listens.
    hits as (select src.* from ins join src on src.id = ins.id)${trackingHitOutboxCtes('hits')},
    pending as (
      insert into tracking_rollup_pending (workspace_id, campaign_id, events, send_ids, at, types, link_indexes, classifications)
      select workspace_id, campaign_id, count(*), array_agg(send_id), array_agg(at), array_agg(type), array_agg(link_index), array_agg(classification)
      from ins group by campaign_id, workspace_id
    )
    select (select count(*)::int from src where untracked) as untracked_hits, (select count(*)::int from ins) as inserted`;
}

/** Resolves to how many events were new (the others had been written before: a retried batch); refused hits count as written. */
export async function writeEvents(db: Db, events: EventColumns): Promise<number> {
  if (events.id.length === 0) return 0;
  // One statement is its own transaction: the events, their outbox rows and their pending record commit together.
  const [row] = rowsOf<{ untracked_hits: number; inserted: number }>(await db.execute(writeStatement(events)));
  return Number(row?.inserted ?? 0) + Number(row?.untracked_hits ?? 0);
}
