import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { ALL_LINKS, applyUpgrades, planRollups, type CampaignDelta, type RecipientDelta, type RollupPlan, type SendState, type WindowSend } from './rollups.js';

/*
 * The rollup pass (rules in rollups.ts): off the event write path (events.repo.ts writes
 * the events and one `tracking_rollup_pending` row per batch and campaign). One transaction:
 *   1. claim the oldest pending rows, up to `maxEvents` events (on a server `for update skip
 *      locked`, so that passes of several processes never take the same row, and the
 *      campaigns' transaction-scoped advisory locks, in hash order: passes over one campaign
 *      are serialized, each sees the rollups of the ones before it);
 *   2. one read statement (one snapshot, taken after the locks): the claimed events grouped
 *      by send, in SQL, keeping only the sends whose rollup state the window can change (a
 *      human event, or a non-human open at or before the stored first human click): each
 *      one's recipient (a send that no longer exists — contact purged, campaign deleted — is
 *      left out, its events deleted with it), its stored state, and for the sends whose
 *      human-click upgrade may move, the latest non-human open at or before the first human
 *      click. Every claimed event is committed already, so that lookup sees them all;
 *   3. plan the send states and upgrades in JavaScript (planRollups/applyUpgrades, one row per
 *      send, none per event), then one statement deletes the claimed rows and, from what they
 *      held, counts the additive part in SQL (events by type and verdict, human events per
 *      recipient, of sends that still exist), adds the upgrades' moves, and writes send
 *      states, recipient counts and campaign rollups. The events' arrays never leave the
 *      database.
 * Committed together or not at all: a pending row is counted exactly once, whichever process
 * takes it, and a pass that fails (or a process killed mid-pass) leaves its rows for the next.
 * A window of thousands of events aggregates: many events of one send or recipient are one
 * row update. Statements: three a pass (claim, read, write), whatever its size, and on a server
 * one more before them (JIT off: passWithoutJit).
 * Purges of a contact or a campaign take the same campaign locks (`lockCampaignRollups`)
 * before they delete anything, and a workspace purge the workspace's lock, which every pass
 * holds shared for the workspaces of its window (`lockWorkspaceRollups`: one lock, whatever
 * the number of campaigns): a pass and a purge of the same data run one after the other, so a
 * pass never writes rollup rows back for sends a purge deleted meanwhile (it sees them gone
 * and skips them), and the purge deletes whatever the pass committed. As a second guard, the
 * write statement writes send states only for sends that still exist.
 */

/** Advisory lock class of campaign rollup writers (the second key is hashtext(campaign id)). */
const ROLLUP_LOCK_CLASS = 0x74726b72;
/** Advisory lock class of a workspace's rollups: passes hold it shared, a workspace purge exclusive (key: hashtext(workspace id)). */
const WORKSPACE_ROLLUP_LOCK_CLASS = 0x74726b77;

/**
 * For a workspace purge, before anything else: waits for every rollup pass over the workspace
 * to commit, and holds back new ones until the purge commits (they then find its sends gone).
 */
export async function lockWorkspaceRollups(db: Db, workspaceId: string): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(${WORKSPACE_ROLLUP_LOCK_CLASS}::int, hashtext(${workspaceId}::text))`);
}

/**
 * Takes the rollup pass's locks of these campaigns (transaction-scoped, in hash order like the
 * pass, so never a deadlock between them). For a purge: take them before any row lock that a
 * pass's writes could need (the campaign row its foreign keys read), or the two would wait on
 * each other. Uncontended on PGlite (one connection).
 */
export async function lockCampaignRollups(db: Db, campaignIds: readonly string[]): Promise<void> {
  if (campaignIds.length === 0) return;
  await db.execute(sql`
    select pg_advisory_xact_lock(${ROLLUP_LOCK_CLASS}::int, h) from (
      select distinct hashtext(c) as h from unnest(${pgArray([...campaignIds])}::text[]) as c order by 1
    ) l`);
}
/** Pending rows looked at per pass (each holds one writer batch of one campaign: up to 1,000 events). */
const CLAIM_ROWS = 64;
export const DEFAULT_ROLLUP_WINDOW = 5_000;

export interface RollupPassResult {
  /** Pending rows rolled up (and deleted). */
  records: number;
  /** Their events counted. */
  events: number;
  /** Their events skipped: the send no longer exists. */
  skipped: number;
  /** The window was full: more may be pending. */
  full: boolean;
}

const ms = (column: string) => sql.raw(`round(extract(epoch from ${column}) * 1000)::float8`);

/** A claimed pending row: one writer batch of one campaign (its events stay in the database). */
interface PendingRecord {
  id: string;
  events: number;
}

/**
 * Step 1: the oldest pending rows, up to `maxEvents` events (at least one row). Claimed rows
 * are this transaction's until it ends (a server: locked), so the next statements read and
 * delete exactly these.
 */
async function claim(tx: Db, maxEvents: number, singleConnection: boolean): Promise<PendingRecord[]> {
  // An embedded database has one connection, held by this transaction: nobody to skip or wait for.
  const window = singleConnection
    ? sql`
      win as (
        select id from (select id, sum(events) over (order by id) - events as before from (select id, events from tracking_rollup_pending order by id limit ${CLAIM_ROWS}) c) w
        where before < ${maxEvents}
      )`
    : sql`
      claimed as materialized (
        select id, workspace_id, campaign_id, events from tracking_rollup_pending order by id limit ${CLAIM_ROWS} for update skip locked
      ),
      win as materialized (
        select id, workspace_id, campaign_id from (select *, sum(events) over (order by id) - events as before from claimed) w where before < ${maxEvents}
      ),
      -- The workspaces' locks (shared) first, then the campaigns' (exclusive), each in hash order.
      locks as (
        select pg_advisory_xact_lock_shared(${WORKSPACE_ROLLUP_LOCK_CLASS}::int, h) from (select distinct hashtext(workspace_id::text) as h from win order by 1) w
        union all
        select pg_advisory_xact_lock(${ROLLUP_LOCK_CLASS}::int, h) from (select distinct hashtext(campaign_id::text) as h from win order by 1) l
      )`;
  return rowsOf<PendingRecord>(
    await tx.execute(sql`
      with ${window}
      select p.id::text as id, p.events
      from win join tracking_rollup_pending p on p.id = win.id
      ${singleConnection ? sql`` : sql`where (select count(*) from locks) >= 0`}
      order by p.id`),
  );
}

/**
 * Step 2 (see above), one snapshot taken after the locks: one row per claimed send that still
 * exists and whose state the window can change, with its recipient, the window's earliest
 * times, its stored state and (when its upgrade may move) the verdict of its latest non-human
 * open at or before its first human click.
 */
export function readStatement(ids: readonly string[]) {
  const mayMove = sql.raw('(p.click_at is not null and p.may_move and (p.open_at is null or p.open_at > p.click_at))');
  return sql`
    with ev as (
      select p.workspace_id, p.campaign_id, u.send_id, u.at, u.type, u.classification
      from tracking_rollup_pending p
      cross join lateral unnest(p.send_ids, p.at, p.types, p.classifications) as u(send_id, at, type, classification)
      where p.id = any(${pgArray(ids)}::bigint[])
    ),
    b as (
      select send_id, workspace_id, campaign_id,
             min(at) filter (where type = 'click' and classification = 'human') as human_click,
             min(at) filter (where type = 'open' and classification = 'human') as human_open,
             min(at) filter (where type = 'open' and classification <> 'human') as other_open
      from ev group by send_id, workspace_id, campaign_id
    ),
    -- Per send whose state this window can change: its stored state, its first human click
    -- after this window, and whether its upgrade may move (a superset of what rollups.ts
    -- re-judges; anything outside it is looked up on its own). The others (no human event,
    -- no open at or before a stored click) only add counts: the write statement's, in SQL.
    per_send as (
      select b.send_id, b.workspace_id, b.campaign_id, b.human_click, b.human_open, b.other_open,
             st.send_id as state_send_id, st.first_human_click_at, st.first_human_open_at, st.upgraded_class,
             least(st.first_human_click_at, b.human_click) as click_at, least(st.first_human_open_at, b.human_open) as open_at,
             st.send_id is null or least(st.first_human_click_at, b.human_click) is distinct from st.first_human_click_at
               or least(st.first_human_open_at, b.human_open) is distinct from st.first_human_open_at
               or coalesce(b.other_open <= least(st.first_human_click_at, b.human_click), false) as may_move
      from b
      left join lateral (select * from tracking_send_rollups where send_id = b.send_id and workspace_id = b.workspace_id limit 1) st on true
      where b.human_click is not null or b.human_open is not null or b.other_open <= st.first_human_click_at
    )
    select p.send_id, p.workspace_id, p.campaign_id, cs.recipient_id, p.state_send_id, p.upgraded_class::text as upgraded_class,
           ${ms('p.human_click')} as window_click_ms, ${ms('p.human_open')} as window_open_ms, ${ms('p.other_open')} as window_other_open_ms,
           ${ms('p.first_human_click_at')} as click_ms, ${ms('p.first_human_open_at')} as open_ms,
           ${ms('p.click_at')} as lookup_click_ms, ${mayMove} as looked_up,
           -- Only for the sends whose upgrade may move (a case: the probe runs for those only).
           case when ${mayMove} then (${latestNonHumanOpen(sql`p.send_id`, sql`p.click_at`)}) end as lookup_class
    from per_send p
    -- A send that no longer exists is left out: its events were deleted with it.
    join lateral ${existingSendRecipient(sql`p.send_id`, sql`p.workspace_id`)} cs on true`;
}

/**
 * A send's recipient, if the send still exists (a lateral join's subquery: one primary-key
 * probe; no row when a purge or a campaign's deletion removed the send).
 */
function existingSendRecipient(sendId: SQL, workspaceId: SQL): SQL {
  return sql`(select recipient_id from campaign_sends cs where cs.id = ${sendId} and cs.workspace_id = ${workspaceId} limit 1)`;
}

/**
 * The verdict of a send's latest non-human open at or before `clickAt` (the larger id on a
 * tie): the upgrade rule's lookup (rollups.ts). Walks the send's index (send_id, at) backwards
 * from the click: a few rows, whatever the table size.
 */
function latestNonHumanOpen(sendId: SQL, clickAt: SQL): SQL {
  return sql`
    select classification::text from tracking_events
    where send_id = ${sendId} and at <= ${clickAt} and type = 'open' and classification <> 'human'
    order by at desc, id desc limit 1`;
}

/**
 * A server's JIT off for the rest of the pass's transaction. The read statement's estimated
 * cost grows with the events stored per send (its upgrade probe into tracking_events, costed
 * as if it ran for every send of the window) and passed `jit_above_cost` (default 100,000) in
 * the ingest bench at ~200,000 events over 10,000 sends: from then on every pass compiled 68
 * functions, 35-40 ms more of a server's CPU (~7 µs per event of a 5,000-event window), for a
 * few thousand rows of index probes and hashing that JIT does not speed up (BENCHMARKS.md,
 * twelfth pass). PGlite is built without JIT: nothing to switch off, no statement spent.
 */
export async function passWithoutJit(tx: Db, singleConnection: boolean): Promise<void> {
  if (!singleConnection) await tx.execute(sql`set local jit = off`);
}

/**
 * Rolls up the oldest pending rows (up to `maxEvents` events) in one transaction; resolves to
 * what it did (nothing pending: zeros). `singleConnection`: an embedded database (PGlite).
 */
export async function rollUpPending(db: Db, options: { singleConnection?: boolean; maxEvents?: number } = {}): Promise<RollupPassResult> {
  return db.transaction(async (txn) => {
    const tx = txn as unknown as Db;
    const maxEvents = options.maxEvents ?? DEFAULT_ROLLUP_WINDOW;
    await passWithoutJit(tx, options.singleConnection ?? false);
    const records = await claim(tx, maxEvents, options.singleConnection ?? false);
    if (records.length === 0) return { records: 0, events: 0, skipped: 0, full: false };
    const ids = records.map((r) => String(r.id));

    const plan = await planWindow(tx, ids);
    const [written] = rowsOf<{ counted: number }>(await tx.execute(rollupWriteStatement(plan, ids)));
    const counted = Number(written?.counted ?? 0);
    const claimedEvents = records.reduce((sum, record) => sum + Number(record.events), 0);
    return { records: ids.length, events: counted, skipped: claimedEvents - counted, full: claimedEvents >= maxEvents || ids.length === CLAIM_ROWS };
  });
}

/**
 * Step 2 and the plan of step 3 (above), over the claimed pending rows `ids`: the read
 * statement, then the send states and upgrades planned in JavaScript. Exported for the ingest
 * bench (EXPLAIN).
 */
export async function planWindow(tx: Db, ids: readonly string[]): Promise<RollupPlan> {
  const window: WindowSend[] = [];
  const known = new Map<string, SendState>();
  const found = new Map<string, { clickMs: number; classification: Classification | null }>();
  const msOf = (value: unknown) => (value === null || value === undefined ? null : Number(value));
  for (const r of rowsOf<Record<string, unknown>>(await tx.execute(readStatement(ids)))) {
    const send = {
      sendId: String(r.send_id),
      workspaceId: String(r.workspace_id),
      campaignId: String(r.campaign_id),
      recipientId: String(r.recipient_id),
    };
    window.push({ ...send, firstHumanClickMs: msOf(r.window_click_ms), firstHumanOpenMs: msOf(r.window_open_ms), firstNonHumanOpenMs: msOf(r.window_other_open_ms) });
    if (r.state_send_id) {
      known.set(send.sendId, { ...send, firstHumanClickMs: msOf(r.click_ms), firstHumanOpenMs: msOf(r.open_ms), upgradedClass: (r.upgraded_class ?? null) as Classification | null });
    }
    if (r.looked_up) found.set(send.sendId, { clickMs: Number(r.lookup_click_ms), classification: (r.lookup_class ?? null) as Classification | null });
  }
  const plan = planRollups(window, known);
  applyUpgrades(plan, known, await latestOpensBeforeClicks(tx, plan.lookups, found));
  return plan;
}

/**
 * Per re-judged send: the verdict of its latest non-human open at or before its first human
 * click, as the read statement found it. A send the statement did not look up for that same
 * click time (it should not happen: its condition is a superset) is looked up now.
 */
async function latestOpensBeforeClicks(
  tx: Db,
  lookups: readonly { sendId: string; firstHumanClickMs: number }[],
  found: ReadonlyMap<string, { clickMs: number; classification: Classification | null }>,
): Promise<Map<string, Classification>> {
  const result = new Map<string, Classification>();
  const missing: { sendId: string; firstHumanClickMs: number }[] = [];
  for (const { sendId, firstHumanClickMs } of lookups) {
    const stored = found.get(sendId);
    if (!stored || stored.clickMs !== firstHumanClickMs) missing.push({ sendId, firstHumanClickMs });
    else if (stored.classification) result.set(sendId, stored.classification);
  }
  for (const [sendId, classification] of await latestOpensBeforeClick(tx, missing)) result.set(sendId, classification);
  return result;
}

/**
 * Step 3's statement: the claimed pending rows deleted, and from what they held (events of
 * sends that still exist) the additive counts, plus the upgrades' moves from the plan: send
 * states, recipient counts (a count leaving 0 is one more unique human, one coming back to 0
 * one less) and campaign rows. Rows are written in key order, so that two passes never lock
 * the same rows in opposite orders. One row: the events counted.
 */
export function rollupWriteStatement(plan: RollupPlan, pendingIds: readonly string[]) {
  const states = [...plan.states.values()].sort((a, b) => (a.sendId < b.sendId ? -1 : a.sendId > b.sendId ? 1 : 0));
  const recipients = [...plan.recipient.values()].filter((r) => r.humanEvents !== 0);
  const campaigns = [...plan.campaign.values()];
  const s = <T extends string | number | null>(pick: (state: SendState) => T) => pgArray(states.map(pick));
  const r = <T extends string | number | null>(pick: (row: RecipientDelta) => T) => pgArray(recipients.map(pick));
  const c = <T extends string | number | null>(pick: (row: CampaignDelta) => T) => pgArray(campaigns.map(pick));
  // Each event counts for its type over every link (-1) and, a click, for its link too.
  const perLink = sql.raw(`cross join lateral (values (${ALL_LINKS}), (case when e.type = 'click' then e.link_index end)) as l(link_index)`);
  // Data-modifying CTEs run exactly once whether or not they are read; "states" is referenced anyway.
  return sql`
    with done as (
      delete from tracking_rollup_pending where id = any(${pgArray(pendingIds)}::bigint[])
      returning workspace_id, campaign_id, send_ids, types, link_indexes, classifications
    ),
    ev as (
      select d.workspace_id, d.campaign_id, u.send_id, u.type, u.link_index, u.classification
      from done d cross join lateral unnest(d.send_ids, d.types, d.link_indexes, d.classifications) as u(send_id, type, link_index, classification)
    ),
    -- The sends that still exist (the others' events were deleted with them: not counted);
    -- materialized: one primary-key probe per send, not one per event.
    present as materialized (
      select s.send_id, cs.recipient_id from (select distinct send_id, workspace_id from ev) s
      join lateral ${existingSendRecipient(sql`s.send_id`, sql`s.workspace_id`)} cs on true
    ),
    counted as materialized (select ev.*, present.recipient_id from ev join present on present.send_id = ev.send_id),
    states as (
      insert into tracking_send_rollups (send_id, workspace_id, campaign_id, recipient_id, first_human_click_at, first_human_open_at, upgraded_class)
      select send_id, workspace_id, campaign_id, recipient_id, to_timestamp(click_ms / 1000.0), to_timestamp(open_ms / 1000.0), upgraded::hit_classification
      from unnest(${s((x) => x.sendId)}::uuid[], ${s((x) => x.workspaceId)}::uuid[], ${s((x) => x.campaignId)}::uuid[], ${s((x) => x.recipientId)}::uuid[],
                  ${s((x) => x.firstHumanClickMs)}::float8[], ${s((x) => x.firstHumanOpenMs)}::float8[], ${s((x) => x.upgradedClass)}::text[])
           as u(send_id, workspace_id, campaign_id, recipient_id, click_ms, open_ms, upgraded)
      where u.send_id in (select send_id from present)
      on conflict (send_id, workspace_id) do update set first_human_click_at = excluded.first_human_click_at,
        first_human_open_at = excluded.first_human_open_at, upgraded_class = excluded.upgraded_class
      returning 1
    ),
    rin as (
      select workspace_id, campaign_id, recipient_id, type, link_index, sum(n)::int as n from (
        select e.workspace_id, e.campaign_id, e.recipient_id, e.type::text as type, l.link_index, count(*) as n
        from counted e ${perLink}
        where e.classification = 'human' and l.link_index is not null
        group by 1, 2, 3, 4, 5
        union all
        select * from unnest(${r((x) => x.workspaceId)}::uuid[], ${r((x) => x.campaignId)}::uuid[], ${r((x) => x.recipientId)}::uuid[],
                             ${r((x) => x.type)}::text[], ${r((x) => x.linkIndex)}::int[], ${r((x) => x.humanEvents)}::int[])
      ) d
      group by 1, 2, 3, 4, 5 having sum(n) <> 0
    ),
    rec as (
      insert into tracking_recipient_rollups as t (workspace_id, campaign_id, recipient_id, type, link_index, human_events)
      select workspace_id, campaign_id, recipient_id, type::tracking_event_type, link_index, n from rin
      order by campaign_id, recipient_id, type, link_index
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
      select workspace_id, campaign_id, type, link_index, sum(human) as human, sum(machine) as machine, sum(unknown) as unknown from (
        select e.workspace_id, e.campaign_id, e.type::text as type, l.link_index,
               count(*) filter (where e.classification = 'human') as human,
               count(*) filter (where e.classification = 'machine') as machine,
               count(*) filter (where e.classification = 'unknown') as unknown
        from counted e ${perLink}
        where l.link_index is not null
        group by 1, 2, 3, 4
        union all
        select * from unnest(${c((x) => x.workspaceId)}::uuid[], ${c((x) => x.campaignId)}::uuid[], ${c((x) => x.type)}::text[], ${c((x) => x.linkIndex)}::int[],
                             ${c((x) => x.human)}::bigint[], ${c((x) => x.machine)}::bigint[], ${c((x) => x.unknown)}::bigint[])
      ) d
      group by 1, 2, 3, 4
    ),
    campaign_rows as (
      insert into tracking_rollups as t (workspace_id, campaign_id, type, link_index, human, machine, unknown, unique_human)
      select cin.workspace_id, cin.campaign_id, cin.type::tracking_event_type, cin.link_index, cin.human, cin.machine, cin.unknown, coalesce(uniq.d, 0)
      from cin left join uniq on uniq.campaign_id = cin.campaign_id and uniq.type = cin.type and uniq.link_index = cin.link_index
      where (select count(*) from states) >= 0
      order by cin.campaign_id, cin.type, cin.link_index
      on conflict (campaign_id, type, link_index, workspace_id) do update set human = t.human + excluded.human, machine = t.machine + excluded.machine,
        unknown = t.unknown + excluded.unknown, unique_human = t.unique_human + excluded.unique_human
      returning 1
    )
    select (select count(*)::int from counted) as counted, (select count(*)::int from campaign_rows) as campaign_rows`;
}

/** Per send: the verdict of its latest non-human open at or before the given time (larger id on a tie). */
async function latestOpensBeforeClick(db: Db, sends: readonly { sendId: string; firstHumanClickMs: number }[]): Promise<Map<string, Classification>> {
  if (sends.length === 0) return new Map();
  const rows = rowsOf<{ send_id: string; classification: Classification }>(
    await db.execute(sql`
      select u.send_id, e.classification
      from unnest(${pgArray(sends.map((s) => s.sendId))}::uuid[], ${pgArray(sends.map((s) => s.firstHumanClickMs))}::float8[]) as u(send_id, click_ms)
      cross join lateral (${latestNonHumanOpen(sql`u.send_id`, sql`to_timestamp(u.click_ms / 1000.0)`)}) e(classification)`),
  );
  return new Map(rows.map((r) => [String(r.send_id), r.classification]));
}
