import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification } from './classify.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { applyUpgrades, planRollups, type CampaignDelta, type InsertedEvent, type RecipientDelta, type RollupPlan, type SendState } from './rollups.js';
import type { TrackingEventRow } from './tracking.repo.js';
import { recordTrackingHits } from '../webhooks/facts.js';

/*
 * The event writer's transaction (rules in rollups.ts):
 *   1. lock each campaign of the batch (transaction-scoped advisory lock, in hash order:
 *      no deadlock between writers);
 *   2. insert the events, `on conflict (id, at) do nothing` (the key of the partitioned
 *      table; both fixed at buffer time), returning the rows actually
 *      inserted with their send's recipient and stored state;
 *   3. re-judge the upgrade of the few sends the batch may have moved (one indexed query);
 *   4. write send states, recipient counts (who became a unique human) and campaign
 *      rollups in one statement, each sorted by key.
 * Three or four statements a batch: on PGlite each statement has a fixed cost.
 * Every statement is batch-sized; a batch of events whose ids were all inserted already
 * changes nothing.
 */

/** Advisory lock class of campaign rollup writers (the second key is hashtext(campaign id)). */
const ROLLUP_LOCK_CLASS = 0x74726b72;

export const EVENT_COLUMNS = sql.raw('id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons');

/** The batch as rows for EVENT_COLUMNS: a dozen array parameters, whatever the batch size. */
export function selectEventsFromArrays(events: readonly TrackingEventRow[]) {
  const column = <T extends string | number | null>(pick: (e: TrackingEventRow) => T) => pgArray(events.map(pick));
  return sql`
    select id, workspace_id, campaign_id, send_id, type::tracking_event_type, link_index, to_timestamp(at_ms / 1000.0), method, ip, user_agent,
           classification::hit_classification, string_to_array(reasons, ',')
    from unnest(
      ${column((e) => e.id)}::uuid[], ${column((e) => e.workspaceId)}::uuid[], ${column((e) => e.campaignId)}::uuid[],
      ${column((e) => e.sendId)}::uuid[], ${column((e) => e.type)}::text[], ${column((e) => e.linkIndex)}::int[],
      ${column((e) => e.atMs)}::float8[], ${column((e) => e.method)}::text[], ${column((e) => e.ip)}::text[],
      ${column((e) => e.userAgent)}::text[], ${column((e) => e.classification)}::text[], ${column((e) => e.reasons.join(','))}::text[]
    ) as u(id, workspace_id, campaign_id, send_id, type, link_index, at_ms, method, ip, user_agent, classification, reasons)`;
}

const byKey = <T>(key: (item: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

/** Resolves to how many events were new (the others had been written before: a retried batch). */
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

    // Runs after the lock was granted, so the state read here is the latest (READ COMMITTED:
    // each statement sees what committed before it started).
    const inserted = rowsOf<Record<string, unknown>>(
      await tx.execute(sql`
        with ins as (
          insert into tracking_events (${EVENT_COLUMNS})
          ${selectEventsFromArrays(events)}
          on conflict (id, at) do nothing
          returning id, workspace_id, send_id
        )
        select ins.id, s.recipient_id, st.send_id as state_send_id, st.workspace_id as state_workspace_id, st.campaign_id as state_campaign_id,
               st.recipient_id as state_recipient_id, st.upgraded_class::text as upgraded_class,
               round(extract(epoch from st.first_human_click_at) * 1000)::float8 as click_ms,
               round(extract(epoch from st.first_human_open_at) * 1000)::float8 as open_ms
        -- Lateral lookups with a limit: one primary-key probe per row, never a hash join over a whole table.
        from ins
        cross join lateral (select recipient_id from campaign_sends where id = ins.send_id and workspace_id = ins.workspace_id limit 1) s
        left join lateral (select * from tracking_send_rollups where send_id = ins.send_id limit 1) st on true`),
    );
    if (inserted.length === 0) return 0;
    // Webhook events of the hits actually new, in this batch's transaction (one statement).
    await recordTrackingHits(tx, inserted.map((r) => String(r.id)));

    const byId = new Map(events.map((e) => [e.id, e]));
    const known = new Map<string, SendState>();
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
      return { workspaceId: e.workspaceId, campaignId: e.campaignId, sendId: e.sendId, recipientId: String(r.recipient_id), type: e.type, linkIndex: e.linkIndex, atMs: e.atMs, classification: e.classification };
    });
    const plan = planRollups(rows, known);
    applyUpgrades(plan, known, await latestOpensBeforeClick(tx, plan.lookups));
    await writeRollups(tx, plan);
    return inserted.length;
  });
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
