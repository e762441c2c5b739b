import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { Classification } from './classify.js';
import { pgArray, rowsOf } from './pg-array.js';
import { applyUniqueHumans, applyUpgrades, planRollups, type InsertedEvent, type SendState } from './rollups.js';
import type { TrackingEventRow } from './tracking.repo.js';

/*
 * The event writer's transaction (rules in rollups.ts):
 *   1. lock each campaign of the batch (transaction-scoped advisory lock, in hash order:
 *      no deadlock between writers);
 *   2. insert the events, `on conflict (id) do nothing`, returning the rows actually
 *      inserted (with their send's recipient);
 *   3. read the state of their sends; re-judge the upgrade of the few sends it may have
 *      moved (one indexed query);
 *   4. write send states, recipient counts (returning them: who became a unique human)
 *      and campaign rollups, each sorted by key.
 * Every statement is batch-sized; a batch of events whose ids were all inserted already
 * changes nothing.
 */

/** Advisory lock class of campaign rollup writers (the second key is hashtext(campaign id)). */
const ROLLUP_LOCK_CLASS = 0x74726b72;

const byKey = <T>(key: (item: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

/** Resolves to how many events were new (the others had been written before: a retried batch). */
export async function writeEventsWithRollups(db: Db, events: readonly TrackingEventRow[]): Promise<number> {
  if (events.length === 0) return 0;
  return db.transaction(async (txn) => {
    const tx = txn as unknown as Db;
    const campaignIds = [...new Set(events.map((e) => e.campaignId))];
    await tx.execute(sql`
      select pg_advisory_xact_lock(${ROLLUP_LOCK_CLASS}::int, h) from (
        select distinct hashtext(c) as h from unnest(${pgArray(campaignIds)}::text[]) as c order by 1
      ) locks`);

    const column = <T extends string | number | null>(pick: (e: TrackingEventRow) => T) => pgArray(events.map(pick));
    const inserted = rowsOf<{ id: string; recipient_id: string }>(
      await tx.execute(sql`
        with ins as (
          insert into tracking_events (id, workspace_id, campaign_id, send_id, type, link_index, at, method, ip, user_agent, classification, reasons)
          select id, workspace_id, campaign_id, send_id, type::tracking_event_type, link_index, to_timestamp(at_ms / 1000.0), method, ip, user_agent,
                 classification::hit_classification, string_to_array(reasons, ',')
          from unnest(
            ${column((e) => e.id)}::uuid[], ${column((e) => e.workspaceId)}::uuid[], ${column((e) => e.campaignId)}::uuid[],
            ${column((e) => e.sendId)}::uuid[], ${column((e) => e.type)}::text[], ${column((e) => e.linkIndex)}::int[],
            ${column((e) => e.atMs)}::float8[], ${column((e) => e.method)}::text[], ${column((e) => e.ip)}::text[],
            ${column((e) => e.userAgent)}::text[], ${column((e) => e.classification)}::text[], ${column((e) => e.reasons.join(','))}::text[]
          ) as u(id, workspace_id, campaign_id, send_id, type, link_index, at_ms, method, ip, user_agent, classification, reasons)
          on conflict (id) do nothing
          returning id, workspace_id, send_id
        )
        select ins.id, s.recipient_id from ins join campaign_sends s on s.id = ins.send_id and s.workspace_id = ins.workspace_id`),
    );
    if (inserted.length === 0) return 0;

    const byId = new Map(events.map((e) => [e.id, e]));
    const rows: InsertedEvent[] = inserted.map((r) => {
      const e = byId.get(String(r.id))!;
      return { workspaceId: e.workspaceId, campaignId: e.campaignId, sendId: e.sendId, recipientId: String(r.recipient_id), type: e.type, linkIndex: e.linkIndex, atMs: e.atMs, classification: e.classification };
    });
    const known = await sendStates(tx, [...new Set(rows.map((r) => r.sendId))]);
    const plan = planRollups(rows, known);
    applyUpgrades(plan, known, await latestOpensBeforeClick(tx, plan.recheck));

    const states = [...plan.states.values()].sort(byKey((s) => s.sendId));
    if (states.length > 0) {
      const col = <T extends string | number | null>(pick: (s: SendState) => T) => pgArray(states.map(pick));
      await tx.execute(sql`
        insert into tracking_send_rollups (send_id, workspace_id, campaign_id, recipient_id, first_human_click_at, first_human_open_at, upgraded_class)
        select send_id, workspace_id, campaign_id, recipient_id, to_timestamp(click_ms / 1000.0), to_timestamp(open_ms / 1000.0), upgraded::hit_classification
        from unnest(${col((s) => s.sendId)}::uuid[], ${col((s) => s.workspaceId)}::uuid[], ${col((s) => s.campaignId)}::uuid[], ${col((s) => s.recipientId)}::uuid[],
                    ${col((s) => s.firstHumanClickMs)}::float8[], ${col((s) => s.firstHumanOpenMs)}::float8[], ${col((s) => s.upgradedClass)}::text[])
             as u(send_id, workspace_id, campaign_id, recipient_id, click_ms, open_ms, upgraded)
        on conflict (send_id) do update set first_human_click_at = excluded.first_human_click_at,
          first_human_open_at = excluded.first_human_open_at, upgraded_class = excluded.upgraded_class`);
    }

    const recipients = [...plan.recipient.values()].filter((r) => r.humanEvents !== 0);
    if (recipients.length > 0) {
      recipients.sort(byKey((r) => `${r.campaignId}|${r.recipientId}|${r.type}|${r.linkIndex}`));
      const col = <T extends string | number | null>(pick: (r: (typeof recipients)[number]) => T) => pgArray(recipients.map(pick));
      const after = rowsOf<{ campaign_id: string; recipient_id: string; type: string; link_index: number; human_events: number }>(
        await tx.execute(sql`
          insert into tracking_recipient_rollups as r (workspace_id, campaign_id, recipient_id, type, link_index, human_events)
          select workspace_id, campaign_id, recipient_id, type::tracking_event_type, link_index, n
          from unnest(${col((r) => r.workspaceId)}::uuid[], ${col((r) => r.campaignId)}::uuid[], ${col((r) => r.recipientId)}::uuid[],
                      ${col((r) => r.type)}::text[], ${col((r) => r.linkIndex)}::int[], ${col((r) => r.humanEvents)}::int[])
               as u(workspace_id, campaign_id, recipient_id, type, link_index, n)
          on conflict (campaign_id, recipient_id, type, link_index) do update set human_events = r.human_events + excluded.human_events
          returning campaign_id, recipient_id, type::text as type, link_index, human_events`),
      );
      applyUniqueHumans(
        plan,
        after.map((r) => ({ campaignId: String(r.campaign_id), recipientId: String(r.recipient_id), type: r.type, linkIndex: Number(r.link_index), humanEvents: Number(r.human_events) })),
      );
    }

    const campaigns = [...plan.campaign.values()].sort(byKey((c) => `${c.campaignId}|${c.type}|${c.linkIndex}`));
    const col = <T extends string | number | null>(pick: (c: (typeof campaigns)[number]) => T) => pgArray(campaigns.map(pick));
    await tx.execute(sql`
      insert into tracking_rollups as t (workspace_id, campaign_id, type, link_index, human, machine, unknown, unique_human)
      select workspace_id, campaign_id, type::tracking_event_type, link_index, human, machine, unknown, unique_human
      from unnest(${col((c) => c.workspaceId)}::uuid[], ${col((c) => c.campaignId)}::uuid[], ${col((c) => c.type)}::text[], ${col((c) => c.linkIndex)}::int[],
                  ${col((c) => c.human)}::bigint[], ${col((c) => c.machine)}::bigint[], ${col((c) => c.unknown)}::bigint[], ${col((c) => c.uniqueHuman)}::bigint[])
           as u(workspace_id, campaign_id, type, link_index, human, machine, unknown, unique_human)
      on conflict (campaign_id, type, link_index) do update set human = t.human + excluded.human, machine = t.machine + excluded.machine,
        unknown = t.unknown + excluded.unknown, unique_human = t.unique_human + excluded.unique_human`);
    return inserted.length;
  });
}

/** Stored state of the sends that have one (sends with a human event). */
async function sendStates(db: Db, sendIds: string[]): Promise<Map<string, SendState>> {
  const rows = rowsOf<Record<string, unknown>>(
    await db.execute(sql`
      select send_id, workspace_id, campaign_id, recipient_id, upgraded_class::text as upgraded_class,
             round(extract(epoch from first_human_click_at) * 1000)::float8 as click_ms,
             round(extract(epoch from first_human_open_at) * 1000)::float8 as open_ms
      from tracking_send_rollups where send_id = any(${pgArray(sendIds)}::uuid[])`),
  );
  const msOf = (value: unknown) => (value === null || value === undefined ? null : Number(value));
  return new Map(
    rows.map((r) => [
      String(r.send_id),
      {
        sendId: String(r.send_id),
        workspaceId: String(r.workspace_id),
        campaignId: String(r.campaign_id),
        recipientId: String(r.recipient_id),
        firstHumanClickMs: msOf(r.click_ms),
        firstHumanOpenMs: msOf(r.open_ms),
        upgradedClass: (r.upgraded_class ?? null) as Classification | null,
      },
    ]),
  );
}

/** Per send: the verdict of its latest non-human open at or before the given time (larger id on a tie). */
async function latestOpensBeforeClick(db: Db, sends: readonly { sendId: string; firstHumanClickMs: number }[]): Promise<Map<string, Classification>> {
  if (sends.length === 0) return new Map();
  const rows = rowsOf<{ send_id: string; classification: Classification }>(
    await db.execute(sql`
      select distinct on (e.send_id) e.send_id, e.classification::text as classification
      from unnest(${pgArray(sends.map((s) => s.sendId))}::uuid[], ${pgArray(sends.map((s) => s.firstHumanClickMs))}::float8[]) as u(send_id, click_ms)
      join tracking_events e on e.send_id = u.send_id and e.type = 'open' and e.classification <> 'human' and e.at <= to_timestamp(u.click_ms / 1000.0)
      order by e.send_id, e.at desc, e.id desc`),
  );
  return new Map(rows.map((r) => [String(r.send_id), r.classification]));
}
