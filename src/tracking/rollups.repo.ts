import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { applyUpgrades, planRollups, type CampaignDelta, type InsertedEvent, type RecipientDelta, type RollupPlan, type SendState } from './rollups.js';
import type { TrackingEventRow } from './tracking.repo.js';
import { trackingHitOutboxCtes } from '../webhooks/facts.js';
import { sendRefusedTracking, untrackedHitCountsCte } from './untracked-hits.js';

/*
 * The event writer's transaction (rules in rollups.ts), two statements a batch (three with
 * the advisory lock on a server) — on PGlite each statement has a fixed cost that dominated
 * small batches, so everything that can share a statement does (issue 14):
 *   1. (server) lock each campaign of the batch (transaction-scoped advisory lock, in hash
 *      order: no deadlock between writers). A statement of its own: the write statement's
 *      snapshot must be taken after the lock is granted (READ COMMITTED).
 *   2. the write statement: probe each hit's send (recipient, contact, address, and whether
 *      that address refused tracking: untracked-hits.ts); count the refused hits; insert the
 *      others `on conflict (id, at) do nothing` (the key of the partitioned table; both fixed
 *      at buffer time) returning the rows actually inserted; write the webhook outbox rows of
 *      those rows; read the stored state of their sends; and, for the sends whose human-click
 *      upgrade this batch may move, the latest non-human open at or before the first human
 *      click (the statement's snapshot does not hold its own inserts: the batch's own opens
 *      are added in JavaScript, same rule, same tie-break).
 *   3. write send states, recipient counts (who became a unique human) and campaign rollups
 *      in one statement, each sorted by key.
 * Every statement is batch-sized; a batch of events whose ids were all inserted already
 * changes nothing.
 */

/** Advisory lock class of campaign rollup writers (the second key is hashtext(campaign id)). */
const ROLLUP_LOCK_CLASS = 0x74726b72;

export const EVENT_COLUMNS = sql.raw('id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons');

/** The batch as rows for EVENT_COLUMNS (named like them): a dozen array parameters, whatever the batch size. */
export function selectEventsFromArrays(events: readonly TrackingEventRow[]) {
  const column = <T extends string | number | null>(pick: (e: TrackingEventRow) => T) => pgArray(events.map(pick));
  return sql`
    select id, workspace_id, campaign_id, send_id, type::tracking_event_type as type, link_index, to_timestamp(at_ms / 1000.0) as at, method, ip, user_agent,
           classification::hit_classification as classification, string_to_array(reasons, ',') as reasons
    from unnest(
      ${column((e) => e.id)}::uuid[], ${column((e) => e.workspaceId)}::uuid[], ${column((e) => e.campaignId)}::uuid[],
      ${column((e) => e.sendId)}::uuid[], ${column((e) => e.type)}::text[], ${column((e) => e.linkIndex)}::int[],
      ${column((e) => e.atMs)}::float8[], ${column((e) => e.method)}::text[], ${column((e) => e.ip)}::text[],
      ${column((e) => e.userAgent)}::text[], ${column((e) => e.classification)}::text[], ${column((e) => e.reasons.join(','))}::text[]
    ) as u(id, workspace_id, campaign_id, send_id, type, link_index, at_ms, method, ip, user_agent, classification, reasons)`;
}

const byKey = <T>(key: (item: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

const ms = (column: string) => sql.raw(`round(extract(epoch from ${column}) * 1000)::float8`);

/** Statement 2 (see above). One row per inserted event of an existing send (or one row of nulls), each with the batch's refused-hit count. */
export function writeStatement(events: readonly TrackingEventRow[]) {
  // The data-modifying CTEs (untracked_counts, the webhook outbox) need no reader: PostgreSQL
  // runs each exactly once, to completion, whether or not the final select reads it.
  return sql`
    with batch as (${selectEventsFromArrays(events)}),
    src as (
      -- Lateral lookups with a limit: one primary-key probe per row, never a hash join over a whole table.
      select b.*, cs.recipient_id, cs.contact_id, cs.email, cs.recipient_id is not null as has_send, coalesce(cs.untracked, false) as untracked
      from batch b
      left join lateral (
        select cs.recipient_id, cs.contact_id, cs.email, ${sendRefusedTracking} as untracked
        from campaign_sends cs where cs.id = b.send_id and cs.workspace_id = b.workspace_id limit 1
      ) cs on true
    )${untrackedHitCountsCte('src')},
    ins as (
      -- A hit on a send that no longer exists (purged or deleted while its token was still in the
      -- send cache) leaves nothing: no IP, no user agent, no verdict of a person who is gone.
      insert into tracking_events (${EVENT_COLUMNS})
      select ${EVENT_COLUMNS} from src where has_send and not untracked
      on conflict (id, at) do nothing
      returning id
    ),
    hits as (select src.* from ins join src on src.id = ins.id)${trackingHitOutboxCtes('hits')},
    -- Per send of the batch: its stored state, its first human click after this batch, and
    -- whether its upgrade may move (a superset of what rollups.ts re-judges; anything
    -- outside it is looked up by a statement of its own).
    per_send as (
      select b.send_id, st.send_id as state_send_id, st.workspace_id, st.campaign_id, st.recipient_id, st.first_human_click_at, st.first_human_open_at,
             st.upgraded_class, least(st.first_human_click_at, b.human_click) as click_at, least(st.first_human_open_at, b.human_open) as open_at,
             st.send_id is null or least(st.first_human_click_at, b.human_click) is distinct from st.first_human_click_at
               or least(st.first_human_open_at, b.human_open) is distinct from st.first_human_open_at
               or coalesce(b.other_open <= least(st.first_human_click_at, b.human_click), false) as may_move
      from (
        select send_id, min(at) filter (where type = 'click' and classification = 'human') as human_click,
               min(at) filter (where type = 'open' and classification = 'human') as human_open,
               min(at) filter (where type = 'open' and classification <> 'human') as other_open
        from src where has_send and not untracked group by send_id
      ) b
      left join lateral (select * from tracking_send_rollups where send_id = b.send_id limit 1) st on true
    ),
    lookup as (
      select p.send_id, e.classification, ${ms('e.at')} as at_ms, e.id
      from per_send p
      left join lateral (
        -- Walks the send's index (send_id, at) backwards from the click: a few rows, whatever the table size.
        select classification::text as classification, at, id from tracking_events
        where send_id = p.send_id and at <= p.click_at and type = 'open' and classification <> 'human'
        order by at desc, id desc limit 1
      ) e on true
      where p.click_at is not null and p.may_move and (p.open_at is null or p.open_at > p.click_at)
    )
    select u.untracked_hits, r.* from (select count(*)::int as untracked_hits from src where untracked) u
    left join (
      select h.id, h.recipient_id, p.state_send_id, p.workspace_id as state_workspace_id, p.campaign_id as state_campaign_id,
             p.recipient_id as state_recipient_id, p.upgraded_class::text as upgraded_class,
             ${ms('p.first_human_click_at')} as click_ms, ${ms('p.first_human_open_at')} as open_ms,
             ${ms('p.click_at')} as lookup_click_ms, l.send_id is not null as looked_up, l.classification as lookup_class, l.at_ms as lookup_at_ms, l.id as lookup_id
      from hits h
      join per_send p on p.send_id = h.send_id
      left join lookup l on l.send_id = h.send_id
    ) r on true`;
}

/** Resolves to how many events were new (the others had been written before: a retried batch); refused hits count as written. */
export async function writeEventsWithRollups(db: Db, events: readonly TrackingEventRow[], options: { singleConnection?: boolean } = {}): Promise<number> {
  if (events.length === 0) return 0;
  return db.transaction(async (txn) => {
    const tx = txn as unknown as Db;
    const campaignIds = [...new Set(events.map((e) => e.campaignId))];
    // An embedded database has one connection, held by this transaction: nobody to wait for.
    if (!options.singleConnection) {
      await tx.execute(sql`
      select pg_advisory_xact_lock(${ROLLUP_LOCK_CLASS}::int, h) from (
        select distinct hashtext(c) as h from unnest(${pgArray(campaignIds)}::text[]) as c order by 1
      ) locks`);
    }

    const result = rowsOf<Record<string, unknown>>(await tx.execute(writeStatement(events)));
    const untracked = Number(result[0]?.untracked_hits ?? 0);
    const inserted = result.filter((r) => r.id !== null && r.id !== undefined);
    if (inserted.length === 0) return untracked;

    const byId = new Map(events.map((e) => [e.id, e]));
    const known = new Map<string, SendState>();
    const found = new Map<string, { clickMs: number; open: LatestOpen | null }>();
    const msOf = (value: unknown) => (value === null || value === undefined ? null : Number(value));
    const rows: InsertedEvent[] = inserted.map((r) => {
      const e = byId.get(String(r.id))!;
      if (r.state_send_id && !known.has(e.sendId)) {
        known.set(e.sendId, {
          sendId: e.sendId,
          workspaceId: String(r.state_workspace_id),
          campaignId: String(r.state_campaign_id),
          recipientId: String(r.state_recipient_id),
          firstHumanClickMs: msOf(r.click_ms),
          firstHumanOpenMs: msOf(r.open_ms),
          upgradedClass: (r.upgraded_class ?? null) as Classification | null,
        });
      }
      if (r.looked_up && !found.has(e.sendId)) {
        const open = r.lookup_id ? { classification: r.lookup_class as Classification, atMs: Number(r.lookup_at_ms), id: String(r.lookup_id) } : null;
        found.set(e.sendId, { clickMs: Number(r.lookup_click_ms), open });
      }
      return { workspaceId: e.workspaceId, campaignId: e.campaignId, sendId: e.sendId, recipientId: String(r.recipient_id), type: e.type, linkIndex: e.linkIndex, atMs: e.atMs, classification: e.classification };
    });
    const plan = planRollups(rows, known);
    const newEvents = inserted.map((r) => byId.get(String(r.id))!);
    applyUpgrades(plan, known, await latestOpensBeforeClicks(tx, plan.lookups, found, newEvents));
    await writeRollups(tx, plan);
    return inserted.length + untracked;
  });
}

interface LatestOpen {
  classification: Classification;
  atMs: number;
  id: string;
}

/** Later wins; on the same time, the larger id (uuid order is the order of its lowercase text). */
const later = (a: LatestOpen | null, b: LatestOpen | null) => (!a ? b : !b ? a : b.atMs > a.atMs || (b.atMs === a.atMs && b.id > a.id) ? b : a);

/**
 * Per re-judged send: the verdict of its latest non-human open at or before its first human
 * click — what the write statement found among stored events, or the batch's own new opens,
 * whichever is later. A send the statement did not look up for that same click time (it
 * should not happen: its condition is a superset) is looked up now, after the insert.
 */
async function latestOpensBeforeClicks(
  tx: Db,
  lookups: readonly { sendId: string; firstHumanClickMs: number }[],
  found: ReadonlyMap<string, { clickMs: number; open: LatestOpen | null }>,
  newEvents: readonly TrackingEventRow[],
): Promise<Map<string, Classification>> {
  const result = new Map<string, Classification>();
  if (lookups.length === 0) return result;
  const wanted = new Map(lookups.map((l) => [l.sendId, l.firstHumanClickMs]));
  const ownOpens = new Map<string, LatestOpen | null>();
  for (const event of newEvents) {
    const click = wanted.get(event.sendId);
    if (click === undefined || event.type !== 'open' || event.classification === 'human' || event.atMs > click) continue;
    ownOpens.set(event.sendId, later(ownOpens.get(event.sendId) ?? null, { classification: event.classification, atMs: event.atMs, id: event.id }));
  }
  const missing: { sendId: string; firstHumanClickMs: number }[] = [];
  for (const { sendId, firstHumanClickMs } of lookups) {
    const stored = found.get(sendId);
    if (!stored || stored.clickMs !== firstHumanClickMs) {
      missing.push({ sendId, firstHumanClickMs });
      continue;
    }
    const latest = later(stored.open, ownOpens.get(sendId) ?? null);
    if (latest) result.set(sendId, latest.classification);
  }
  for (const [sendId, classification] of await latestOpensBeforeClick(tx, missing)) result.set(sendId, classification);
  return result;
}

/**
 * One statement: send states, recipient counts (a count leaving 0 is one more unique
 * human, one coming back to 0 one less) and campaign rows. Inputs sorted by key, so that
 * two writers never lock the same rows in opposite orders.
 */
async function writeRollups(db: Db, plan: RollupPlan): Promise<void> {
  const states = [...plan.states.values()].sort(byKey((s) => s.sendId));
  const recipients = [...plan.recipient.values()].filter((r) => r.humanEvents !== 0).sort(byKey((r) => `${r.campaignId}|${r.recipientId}|${r.type}|${r.linkIndex}`));
  const campaigns = [...plan.campaign.values()].sort(byKey((c) => `${c.campaignId}|${c.type}|${c.linkIndex}`));
  const s = <T extends string | number | null>(pick: (state: SendState) => T) => pgArray(states.map(pick));
  const r = <T extends string | number | null>(pick: (row: RecipientDelta) => T) => pgArray(recipients.map(pick));
  const c = <T extends string | number | null>(pick: (row: CampaignDelta) => T) => pgArray(campaigns.map(pick));
  // Data-modifying CTEs run whether or not they are read; "states" is referenced anyway.
  await db.execute(sql`
    with states as (
      insert into tracking_send_rollups (send_id, workspace_id, campaign_id, recipient_id, first_human_click_at, first_human_open_at, upgraded_class)
      select send_id, workspace_id, campaign_id, recipient_id, to_timestamp(click_ms / 1000.0), to_timestamp(open_ms / 1000.0), upgraded::hit_classification
      from unnest(${s((x) => x.sendId)}::uuid[], ${s((x) => x.workspaceId)}::uuid[], ${s((x) => x.campaignId)}::uuid[], ${s((x) => x.recipientId)}::uuid[],
                  ${s((x) => x.firstHumanClickMs)}::float8[], ${s((x) => x.firstHumanOpenMs)}::float8[], ${s((x) => x.upgradedClass)}::text[])
           as u(send_id, workspace_id, campaign_id, recipient_id, click_ms, open_ms, upgraded)
      on conflict (send_id, workspace_id) do update set first_human_click_at = excluded.first_human_click_at,
        first_human_open_at = excluded.first_human_open_at, upgraded_class = excluded.upgraded_class
      returning 1
    ),
    rin as (
      select * from unnest(${r((x) => x.workspaceId)}::uuid[], ${r((x) => x.campaignId)}::uuid[], ${r((x) => x.recipientId)}::uuid[],
                           ${r((x) => x.type)}::text[], ${r((x) => x.linkIndex)}::int[], ${r((x) => x.humanEvents)}::int[])
             as u(workspace_id, campaign_id, recipient_id, type, link_index, n)
    ),
    rec as (
      insert into tracking_recipient_rollups as t (workspace_id, campaign_id, recipient_id, type, link_index, human_events)
      select workspace_id, campaign_id, recipient_id, type::tracking_event_type, link_index, n from rin
      on conflict (campaign_id, recipient_id, type, link_index, workspace_id) do update set human_events = t.human_events + excluded.human_events
      returning t.campaign_id, t.recipient_id, t.type::text as type, t.link_index, t.human_events
    ),
    uniq as (
      select rec.campaign_id, rec.type, rec.link_index,
             sum(case when rec.human_events - rin.n <= 0 and rec.human_events > 0 then 1
                      when rec.human_events - rin.n > 0 and rec.human_events <= 0 then -1 else 0 end) as d
      from rec join rin on rin.campaign_id = rec.campaign_id and rin.recipient_id = rec.recipient_id and rin.type = rec.type and rin.link_index = rec.link_index
      group by 1, 2, 3
    ),
    cin as (
      select * from unnest(${c((x) => x.workspaceId)}::uuid[], ${c((x) => x.campaignId)}::uuid[], ${c((x) => x.type)}::text[], ${c((x) => x.linkIndex)}::int[],
                           ${c((x) => x.human)}::bigint[], ${c((x) => x.machine)}::bigint[], ${c((x) => x.unknown)}::bigint[])
             as u(workspace_id, campaign_id, type, link_index, human, machine, unknown)
    )
    insert into tracking_rollups as t (workspace_id, campaign_id, type, link_index, human, machine, unknown, unique_human)
    select cin.workspace_id, cin.campaign_id, cin.type::tracking_event_type, cin.link_index, cin.human, cin.machine, cin.unknown, coalesce(uniq.d, 0)
    from cin left join uniq on uniq.campaign_id = cin.campaign_id and uniq.type = cin.type and uniq.link_index = cin.link_index
    where (select count(*) from states) >= 0
    order by cin.campaign_id, cin.type, cin.link_index
    on conflict (campaign_id, type, link_index, workspace_id) do update set human = t.human + excluded.human, machine = t.machine + excluded.machine,
      unknown = t.unknown + excluded.unknown, unique_human = t.unique_human + excluded.unique_human`);
}

/** Per send: the verdict of its latest non-human open at or before the given time (larger id on a tie). */
async function latestOpensBeforeClick(db: Db, sends: readonly { sendId: string; firstHumanClickMs: number }[]): Promise<Map<string, Classification>> {
  if (sends.length === 0) return new Map();
  const rows = rowsOf<{ send_id: string; classification: Classification }>(
    await db.execute(sql`
      select u.send_id, e.classification
      from unnest(${pgArray(sends.map((s) => s.sendId))}::uuid[], ${pgArray(sends.map((s) => s.firstHumanClickMs))}::float8[]) as u(send_id, click_ms)
      cross join lateral (
        -- Walks the send's index (send_id, at) backwards from the click: a few rows, whatever the table size.
        select classification::text as classification from tracking_events
        where send_id = u.send_id and at <= to_timestamp(u.click_ms / 1000.0) and type = 'open' and classification <> 'human'
        order by at desc, id desc limit 1
      ) e`),
  );
  return new Map(rows.map((r) => [String(r.send_id), r.classification]));
}
