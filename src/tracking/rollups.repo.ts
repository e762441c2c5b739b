import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { applyUpgrades, planRollups, type CampaignDelta, type RecipientDelta, type RollupPlan, type SendState, type WindowSend } from './rollups.js';
import { countWindow, parsePending, summarizeSends, type PendingBatch, type PendingText, type SendSummary } from './rollup-window.js';

/*
 * The rollup pass (rules in rollups.ts): off the event write path (events.repo.ts writes
 * the events and one `tracking_rollup_pending` row per batch and campaign). One transaction:
 *   1. claim the oldest pending rows, up to `maxEvents` events (on a server `for update skip
 *      locked`, so that passes of several processes never take the same row, and the
 *      campaigns' transaction-scoped advisory locks, in hash order: passes over one campaign
 *      are serialized, each sees the rollups of the ones before it);
 *      The claim returns the rows' events as text (send, time, type, link, verdict);
 *   2. in JavaScript (rollup-window.ts), the window summed per send: its earliest human click,
 *      human open and other open. Then one read statement (one snapshot, taken after the
 *      locks), up to three index probes per send, never per event: each send's recipient (a
 *      send that no longer exists — contact purged, campaign deleted — has none: its events
 *      are not counted, they were deleted with it), and for the sends whose rollup state the window
 *      can change (a human event, or a non-human open at or before the stored first human
 *      click) their stored state and, where the human-click upgrade may move, the latest
 *      non-human open at or before the first human click. Every claimed event is committed
 *      already, so that lookup sees them all;
 *   3. plan in JavaScript: the send states and upgrades (rollups.ts planRollups/applyUpgrades,
 *      one row per send) and the additive counts (rollup-window.ts: events by campaign, type,
 *      link and verdict, human events per recipient, of sends that still exist). Then one
 *      statement deletes the claimed rows and writes send states (only those that changed),
 *      recipient counts and campaign rollups. Summing in SQL what is now summed here was
 *      two thirds of a pass on PGlite (BENCHMARKS.md, issue 14 eighteenth pass).
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
 * and skips them), and the purge deletes whatever the pass committed. So every path that
 * deletes sends, recipients or campaigns must take these locks before it deletes (today the
 * three purges in privacy/purge.repo.ts do): the recipient and campaign rows are written from
 * what the read statement saw. As a second guard for send states only, the write statement
 * writes them only for sends that still exist.
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

/**
 * A pending row's events as text, for rollup-window.ts: uuids, times (epoch milliseconds, in
 * the stored order), types, links (a null as '') and verdicts, each comma-separated. Text is
 * the cheapest form to hand over: no per-element parsing by the driver.
 */
const PENDING_TEXT = sql.raw(`p.id::text as id, p.events, p.workspace_id::text as workspace_id, p.campaign_id::text as campaign_id,
  array_to_string(p.send_ids, ',') as send_ids,
  (select string_agg((extract(epoch from u.at) * 1000)::text, ',' order by u.n) from unnest(p.at) with ordinality as u(at, n)) as at_ms,
  array_to_string(p.types, ',') as types, array_to_string(p.link_indexes, ',', '') as link_indexes,
  array_to_string(p.classifications, ',') as classifications`);

/**
 * Step 1: the oldest pending rows, up to `maxEvents` events (at least one row), with their
 * events. Claimed rows are this transaction's until it ends (a server: locked), so the write
 * statement deletes exactly these.
 */
async function claim(tx: Db, maxEvents: number, singleConnection: boolean): Promise<PendingBatch[]> {
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
  return rowsOf<PendingText>(
    await tx.execute(sql`
      with ${window}
      select ${PENDING_TEXT}
      from win join tracking_rollup_pending p on p.id = win.id
      ${singleConnection ? sql`` : sql`where (select count(*) from locks) >= 0`}
      order by p.id`),
  ).map(parsePending);
}

/** The pending rows `ids` with their events, unclaimed (for the ingest bench's EXPLAIN). */
export async function readPending(tx: Db, ids: readonly string[]): Promise<PendingBatch[]> {
  return rowsOf<PendingText>(await tx.execute(sql`select ${PENDING_TEXT} from tracking_rollup_pending p where p.id = any(${pgArray(ids)}::bigint[]) order by p.id`)).map(parsePending);
}

/**
 * Step 2 (see above), one snapshot taken after the locks, over the window's sends as
 * rollup-window.ts summed them (`sends`, in that order). Per send: its recipient, if it still
 * exists; and, when the window can change its state (a human event, or a non-human open at or
 * before the stored first human click), its stored state and (when its upgrade may move) the
 * verdict of its latest non-human open at or before its first human click.
 * One row, not one per send: `sends`, per send in the order given, its recipient ('' when it
 * is gone), 'y' when the window can change its state, 'y' when it has a stored state, the
 * upgraded open's verdict, the stored first human click and open (ms), 'y' when the upgrade
 * was looked up, for which click (ms), and the verdict found — space-separated. PGlite hands
 * each result row over at ~10 µs, about what the statement costs per send.
 */
export function readStatement(sends: readonly SendSummary[]) {
  const mayMove = sql.raw('(p.click_at is not null and p.may_move and (p.open_at is null or p.open_at > p.click_at))');
  const column = (pick: (send: SendSummary) => string | number | null) => pgArray(sends.map(pick));
  // A send's fields, space-separated ('' for none: concat_ws skips nulls, the positions must hold).
  const fields = (values: SQL[]) => sql.join(values.map((value) => sql`coalesce((${value})::text, '')`), sql`, `);
  return sql`
    with b as (
      select ord, send_id, workspace_id, to_timestamp(hc / 1000.0) as human_click, to_timestamp(ho / 1000.0) as human_open, to_timestamp(oo / 1000.0) as other_open
      from unnest(${column((x) => x.sendId)}::uuid[], ${column((x) => x.workspaceId)}::uuid[], ${column((x) => x.firstHumanClickMs)}::float8[],
                  ${column((x) => x.firstHumanOpenMs)}::float8[], ${column((x) => x.firstNonHumanOpenMs)}::float8[]) with ordinality as w(send_id, workspace_id, hc, ho, oo, ord)
    ),
    -- A send that no longer exists has no recipient: its events were deleted with it.
    present as (
      select b.*, cs.recipient_id from b left join lateral ${existingSendRecipient(sql`b.send_id`, sql`b.workspace_id`)} cs on true
    ),
    -- Per send: its stored state, its first human click after this window, and whether its
    -- upgrade may move (a superset of what rollups.ts re-judges; anything outside it is looked
    -- up on its own).
    per_send as (
      select b.*, st.send_id as state_send_id, st.first_human_click_at, st.first_human_open_at, st.upgraded_class,
             least(st.first_human_click_at, b.human_click) as click_at, least(st.first_human_open_at, b.human_open) as open_at,
             st.send_id is null or least(st.first_human_click_at, b.human_click) is distinct from st.first_human_click_at
               or least(st.first_human_open_at, b.human_open) is distinct from st.first_human_open_at
               or coalesce(b.other_open <= least(st.first_human_click_at, b.human_click), false) as may_move,
             b.recipient_id is not null and coalesce(b.human_click is not null or b.human_open is not null or b.other_open <= st.first_human_click_at, false) as changes
      from present b
      left join lateral (select * from tracking_send_rollups where send_id = b.send_id and workspace_id = b.workspace_id and b.recipient_id is not null limit 1) st on true
    )
    -- One aggregate, one sort (PostgreSQL before 16 sorts each ordered aggregate on its own).
    select string_agg(concat_ws(' ', ${fields([
      sql`p.recipient_id`,
      sql`case when p.changes then 'y' end`,
      sql`case when p.changes and p.state_send_id is not null then 'y' end`,
      sql`case when p.changes then p.upgraded_class end`,
      sql`case when p.changes then ${ms('p.first_human_click_at')} end`,
      sql`case when p.changes then ${ms('p.first_human_open_at')} end`,
      sql`case when p.changes and ${mayMove} then 'y' end`,
      sql`case when p.changes and ${mayMove} then ${ms('p.click_at')} end`,
      // Only for the sends whose upgrade may move (a case: the probe runs for those only).
      sql`case when p.changes and ${mayMove} then (${latestNonHumanOpen(sql`p.send_id`, sql`p.click_at`)}) end`,
    ])}), ',' order by p.ord) as sends
    from per_send p`;
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
    const ids = records.map((r) => r.id);

    const { plan, counted } = await planWindow(tx, records);
    await tx.execute(rollupWriteStatement(plan, ids));
    const claimedEvents = records.reduce((sum, record) => sum + record.events, 0);
    return { records: ids.length, events: counted, skipped: claimedEvents - counted, full: claimedEvents >= maxEvents || ids.length === CLAIM_ROWS };
  });
}

/** A window planned: the plan (send states, upgrades, every count) and the events it counted. */
export interface PlannedWindow {
  plan: RollupPlan;
  counted: number;
}

/**
 * Step 2 and the plan of step 3 (above), over the claimed pending rows: the sends summed in
 * JavaScript, the read statement, then the send states and upgrades planned (rollups.ts) and
 * the additive counts added to them (rollup-window.ts). Exported for the ingest bench (EXPLAIN).
 */
export async function planWindow(tx: Db, batches: readonly PendingBatch[]): Promise<PlannedWindow> {
  const sends = summarizeSends(batches);
  const window: WindowSend[] = [];
  const known = new Map<string, SendState>();
  const recipientOf = new Map<string, string>();
  const found = new Map<string, { clickMs: number; classification: Classification | null }>();
  const summaries = [...sends.values()];
  const [read] = rowsOf<{ sends: string | null }>(await tx.execute(readStatement(summaries)));
  const answers = (read?.sends ?? '').split(',');
  const msOf = (value: string | undefined) => (value ? Number(value) : null);
  // Objects written out, not spread: a spread of a non-literal object cost ~2 µs each here,
  // 4 of the pass's ~10 ms of JavaScript (BENCHMARKS.md, issue 14 eighteenth pass).
  for (let i = 0; i < summaries.length; i += 1) {
    const { sendId, workspaceId, campaignId, firstHumanClickMs, firstHumanOpenMs, firstNonHumanOpenMs } = summaries[i]!;
    const [recipientId, changes, stored, upgraded, clickMs, openMs, lookedUp, lookupClickMs, lookupClass] = (answers[i] ?? '').split(' ');
    if (!recipientId) continue;
    recipientOf.set(sendId, recipientId);
    if (!changes) continue;
    window.push({ sendId, workspaceId, campaignId, recipientId, firstHumanClickMs, firstHumanOpenMs, firstNonHumanOpenMs });
    if (stored) {
      const upgradedClass = (upgraded || null) as Classification | null;
      known.set(sendId, { sendId, workspaceId, campaignId, recipientId, firstHumanClickMs: msOf(clickMs), firstHumanOpenMs: msOf(openMs), upgradedClass });
    }
    if (lookedUp) found.set(sendId, { clickMs: Number(lookupClickMs), classification: (lookupClass || null) as Classification | null });
  }
  const plan = planRollups(window, known);
  applyUpgrades(plan, known, await latestOpensBeforeClicks(tx, plan.lookups, found));
  return { plan, counted: countWindow(plan, batches, recipientOf) };
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
 * Step 3's statement: the claimed pending rows deleted, and the plan written: send states,
 * recipient counts (a count leaving 0 is one more unique human, one coming back to 0 one
 * less) and campaign rows. Rows are written in key order, so that two passes never lock the
 * same rows in opposite orders.
 */
export function rollupWriteStatement(plan: RollupPlan, pendingIds: readonly string[]) {
  const states = [...plan.states.values()].sort((a, b) => (a.sendId < b.sendId ? -1 : a.sendId > b.sendId ? 1 : 0));
  const recipients = [...plan.recipient.values()].filter((r) => r.humanEvents !== 0);
  const campaigns = [...plan.campaign.values()];
  const s = <T extends string | number | null>(pick: (state: SendState) => T) => pgArray(states.map(pick));
  const r = <T extends string | number | null>(pick: (row: RecipientDelta) => T) => pgArray(recipients.map(pick));
  const c = <T extends string | number | null>(pick: (row: CampaignDelta) => T) => pgArray(campaigns.map(pick));
  // Data-modifying CTEs run exactly once whether or not they are read; "states" is referenced anyway.
  return sql`
    with done as (
      delete from tracking_rollup_pending where id = any(${pgArray(pendingIds)}::bigint[])
    ),
    states as (
      insert into tracking_send_rollups (send_id, workspace_id, campaign_id, recipient_id, first_human_click_at, first_human_open_at, upgraded_class)
      select send_id, workspace_id, campaign_id, recipient_id, to_timestamp(click_ms / 1000.0), to_timestamp(open_ms / 1000.0), upgraded::hit_classification
      from unnest(${s((x) => x.sendId)}::uuid[], ${s((x) => x.workspaceId)}::uuid[], ${s((x) => x.campaignId)}::uuid[], ${s((x) => x.recipientId)}::uuid[],
                  ${s((x) => x.firstHumanClickMs)}::float8[], ${s((x) => x.firstHumanOpenMs)}::float8[], ${s((x) => x.upgradedClass)}::text[])
           as u(send_id, workspace_id, campaign_id, recipient_id, click_ms, open_ms, upgraded)
      -- A second guard for send states only (recipient and campaign rows rely on the locks
      -- alone, see above): never a state for a send that is gone.
      where exists ${existingSendRecipient(sql`u.send_id`, sql`u.workspace_id`)}
      on conflict (send_id, workspace_id) do update set first_human_click_at = excluded.first_human_click_at,
        first_human_open_at = excluded.first_human_open_at, upgraded_class = excluded.upgraded_class
      returning 1
    ),
    rin as (
      select * from unnest(${r((x) => x.workspaceId)}::uuid[], ${r((x) => x.campaignId)}::uuid[], ${r((x) => x.recipientId)}::uuid[],
                           ${r((x) => x.type)}::text[], ${r((x) => x.linkIndex)}::int[], ${r((x) => x.humanEvents)}::int[])
             as u(workspace_id, campaign_id, recipient_id, type, link_index, n)
    ),
    -- Each row returns its count before (human_events - last_delta) and after this pass: a
    -- count leaving 0 is one more unique human, one coming back to 0 one less.
    rec as (
      insert into tracking_recipient_rollups as t (workspace_id, campaign_id, recipient_id, type, link_index, human_events, last_delta)
      select workspace_id, campaign_id, recipient_id, type::tracking_event_type, link_index, n, n from rin
      order by campaign_id, recipient_id, type, link_index
      on conflict (campaign_id, recipient_id, type, link_index, workspace_id) do update
        set human_events = t.human_events + excluded.human_events, last_delta = excluded.human_events
      returning t.campaign_id, t.type::text as type, t.link_index,
        case when t.human_events - t.last_delta <= 0 and t.human_events > 0 then 1
             when t.human_events - t.last_delta > 0 and t.human_events <= 0 then -1 else 0 end as d
    ),
    uniq as (select campaign_id, type, link_index, sum(d) as d from rec group by 1, 2, 3),
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
      unknown = t.unknown + excluded.unknown, unique_human = t.unique_human + excluded.unique_human`;
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
