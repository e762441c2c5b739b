import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { WebhookEventInput } from './events.js';

/*
 * The outbox writer, called inside the transaction of the fact an event reports: the event
 * commits with its fact or not at all. Events are written only for workspaces with an
 * enabled endpoint subscribed to that type, and fanned out at once into one pending
 * delivery per such endpoint — so the delivery worker only ever reads deliveries.
 */

/**
 * Two data-modifying CTEs (`webhook_event_rows`, `webhook_delivery_rows`) over `source`, a
 * SELECT yielding `workspace_id uuid, type text, occurred_at timestamptz, data jsonb`. For
 * writers whose fact is itself one statement (the send ledger): add them to its WITH list.
 */
export function webhookOutboxCtes(source: SQL): SQL {
  return sql`
    webhook_event_rows as (
      insert into webhook_events (workspace_id, type, occurred_at, data)
      select s.workspace_id, s.type, s.occurred_at, s.data from (${source}) s
      where exists (select 1 from webhook_endpoints e where e.workspace_id = s.workspace_id and e.enabled and s.type = any(e.event_types))
      returning id, workspace_id, type
    ),
    webhook_delivery_rows as (
      insert into webhook_deliveries (workspace_id, endpoint_id, event_id)
      select ev.workspace_id, e.id, ev.id
      from webhook_event_rows ev
      join webhook_endpoints e on e.workspace_id = ev.workspace_id and e.enabled and ev.type = any(e.event_types)
    )`;
}

type Executor = Pick<Db, 'execute'>;

/** One statement for any number of events; pass the transaction the fact is written in. */
export async function recordWebhookEvents(executor: Executor, events: readonly WebhookEventInput[]): Promise<void> {
  if (events.length === 0) return;
  const rows = JSON.stringify(
    events.map((e) => ({ workspace_id: e.workspaceId, type: e.type, occurred_at: e.occurredAt.toISOString(), data: e.data })),
  );
  await executor.execute(sql`
    with ${webhookOutboxCtes(sql`select * from jsonb_to_recordset(${rows}::jsonb) as r(workspace_id uuid, type text, occurred_at timestamptz, data jsonb)`)}
    select 1`);
}
