import { sql } from 'drizzle-orm';

/*
 * Hits from recipients who refused tracking (preference center, contacts.tracking_refused_at),
 * and hits on mail to a contact since deleted (P-13: from the deletion on, nothing new is
 * collected about them; the purge later removes what was). Their new mail carries no pixel and
 * no tracked link, but mail sent before they asked (or were deleted) still does. Such a hit is still answered as usual (the pixel, the redirect: invariant 4); at
 * write time, inside the event writer's one write statement (events.repo.ts), it is left
 * out of the insert and only counted per campaign and type in `untracked_hit_counts`: no
 * event row, no IP, no user agent, no per-recipient rollup, no webhook. A batch retried after
 * a lost acknowledgement may count its diverted hits twice (they have no row whose id could
 * say they landed); the count is an approximate total by design.
 *
 * Why the check is read in the write statement, not kept as a flag on campaign_sends
 * (issue 14): the statement already probes each hit's send by primary key (for its
 * recipient); the check adds two probes of partial indexes holding only contacts who refused
 * or were deleted (`contacts_untracked_idx` by address, `contacts_untracked_id_idx` by id;
 * migrations 0019, 0044, 0046) (the purge takes those away
 * within PURGE_AFTER_DAYS) — usually empty, a few pages at most — so
 * it costs the batch no statement and next to no time (BENCHMARKS.md, issue 14 third pass).
 * A flag would save that probe but must be kept right by every path that can change the
 * answer — the preference change, a contact's address edited, a contact created, merged,
 * deleted or purged, a send created — each one a place to forget; the join cannot be wrong.
 */

/**
 * For the send row `cs` of a hit: does its address belong to a contact of the workspace who
 * refused tracking, or did the send's own contact refuse (its address may have changed since
 * the send) or get deleted? (Only that contact: someone added again later at the same address
 * is a new contact, tracked as any other.) Two probes of partial indexes that hold only such
 * contacts (migrations 0044, 0046): by address, and by the send's contact id.
 */
export const sendRefusedTracking = sql`(exists (
  select 1 from contacts c
  where c.workspace_id = cs.workspace_id and lower(c.email) = lower(cs.email) and c.tracking_refused_at is not null
) or exists (
  select 1 from contacts c
  where c.workspace_id = cs.workspace_id and c.id = cs.contact_id and (c.tracking_refused_at is not null or c.deleted_at is not null)))`;

/**
 * A data-modifying CTE over `source` (a CTE with workspace_id, campaign_id, type and a boolean
 * `untracked`): adds the batch's refused hits to the counts, per campaign and type, in key order
 * (like the rollups: concurrent writers lock rows in one order). Starts with a comma.
 */
export const untrackedHitCountsCte = (source: string) => sql`,
    untracked_counts as (
      insert into untracked_hit_counts (workspace_id, campaign_id, type, hits)
      select workspace_id, campaign_id, type, count(*) from ${sql.raw(source)} where untracked
      group by campaign_id, type, workspace_id order by campaign_id, type, workspace_id
      on conflict (campaign_id, type, workspace_id) do update set hits = untracked_hit_counts.hits + excluded.hits
    )`;
