import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import type { WebhookEventInput } from './events.js';
import { recordWebhookEvents, webhookOutboxCtes } from './outbox.js';

/*
 * The event of each fact, as its writer calls it: one call, in the fact's own transaction
 * (or statement). Kept here so that the writers (send ledger, 1:1 messages, signals,
 * tracking, suppression, consent, campaigns, mailboxes) each add one line.
 */

type Executor = Pick<Db, 'execute'>;

/** Runs the outbox CTEs over a SELECT of (workspace_id, type, occurred_at, data): one statement. */
async function recordFromSelect(executor: Executor, source: SQL): Promise<void> {
  await executor.execute(sql`with ${webhookOutboxCtes(source)} select 1`);
}

/**
 * For the send ledger's one-statement transitions: the CTEs that report the campaign sends
 * the `ledger` CTE (an UPDATE … RETURNING id, workspace_id, campaign_id, step, contact_id,
 * email, message_id) changed. `at`: one time for every row, or `'sent_at'` for each row's own
 * (the ledger CTE then returns sent_at: a group-committed statement records sends of
 * different times). Starts with a comma: append it to that WITH list.
 */
export function campaignSendOutcomeCtes(type: 'message.sent' | 'message.failed', at: Date | 'sent_at', errorCode?: string): SQL {
  const error = errorCode === undefined ? sql`'{}'::jsonb` : sql`jsonb_build_object('errorCode', ${errorCode}::text)`;
  const occurredAt = at === 'sent_at' ? sql`l.sent_at` : sql`${at.toISOString()}::timestamptz`;
  // Only a live contact is named, with the address the send went to (P-13: a deleted contact
  // has left every API, webhooks too — as in recordMailSignal): an outcome recorded after the
  // deletion (a send in flight then, or one settled days later) names neither.
  return sql`,
    ${webhookOutboxCtes(sql`
      select l.workspace_id, ${type}::text as type, ${occurredAt} as occurred_at,
             jsonb_build_object('messageId', l.message_id, 'campaignId', l.campaign_id, 'sendId', l.id, 'step', l.step,
                                'contactId', case when c.live then c.id end, 'email', case when c.live then l.email end) || ${error} as data
      from ledger l
      -- A lateral lookup by the key alone, with a limit: one primary-key probe per send. Never a
      -- hash join over every contact, nor (with the workspace and deleted_at in its condition) the
      -- workspace's whole live-address index, which a plan made on small tables picks and keeps.
      left join lateral (
        select c.id, c.deleted_at is null and c.workspace_id = l.workspace_id as live from contacts c where c.id = l.contact_id limit 1) c on true`)}`;
}

/** A 1:1 message that reached its outcome (`sent` or `failed`). */
export function oneToOneOutcomeEvent(row: {
  id: string;
  workspaceId: string;
  mailboxId: string | null;
  status: string;
  errorCode: string | null;
  at?: Date | null;
}): WebhookEventInput {
  return {
    workspaceId: row.workspaceId,
    type: row.status === 'sent' ? 'message.sent' : 'message.failed',
    occurredAt: new Date(),
    data: {
      messageId: row.id,
      ...(row.mailboxId ? { mailboxId: row.mailboxId } : {}),
      ...(row.status === 'failed' && row.errorCode ? { errorCode: row.errorCode } : {}),
    },
  };
}

/**
 * Opens and clicks the tracking writer inserted: CTEs for its one write statement, over
 * `hits` (a CTE of the rows actually new, with their send's contact_id and email). Starts
 * with a comma: append it to that WITH list.
 */
export function trackingHitOutboxCtes(hits: string): SQL {
  return sql`,
    ${webhookOutboxCtes(sql`
      select h.workspace_id, h.type::text as type, h.at as occurred_at,
             jsonb_build_object('trackingEventId', h.id, 'campaignId', h.campaign_id, 'sendId', h.send_id, 'contactId', h.contact_id,
                                'email', h.email, 'verdict', h.classification::text, 'reasons', to_jsonb(h.reasons), 'linkIndex', h.link_index) as data
      from ${sql.raw(hits)} h
      -- One probe for the whole batch: no endpoint listening for hits, nothing to build.
      where exists (select 1 from webhook_endpoints e where e.enabled and e.event_types && array['open', 'click'])`)}`;
}

/** A reply, automatic reply, bounce or delay recorded from a mailbox (mail_events row). Only the contact's own address is named. */
export async function recordMailSignal(executor: Executor, mailEventId: string): Promise<void> {
  await recordFromSelect(
    executor,
    sql`
      select me.workspace_id,
             case when me.type in ('reply', 'auto_reply') then 'reply' else 'bounce' end as type,
             me.at as occurred_at,
             jsonb_build_object('messageId', me.message_id, 'campaignId', cs.campaign_id,
                                'contactId', case when sc.live then sc.id else c.id end, 'email', case when sc.live then sc.email else c.email end) ||
             case when me.type in ('reply', 'auto_reply') then jsonb_build_object('automatic', me.type = 'auto_reply')
                  else jsonb_build_object('kind', case when me.type = 'delay' then 'delay' else coalesce(me.detail ->> 'kind', 'hard') end) end as data
      from mail_events me
      left join lateral (select campaign_id, contact_id, email from campaign_sends where message_id = me.message_id and workspace_id = me.workspace_id limit 1) cs on true
      -- Only a live contact is named (P-13: a deleted one has left every API, webhooks too): the
      -- send's own, else the workspace's contact with the address. The send's own by its key
      -- alone (a plan made on small tables read the workspace's live-address index for it).
      left join lateral (
        select id, email, deleted_at is null and workspace_id = me.workspace_id as live from contacts where id = cs.contact_id limit 1) sc on true
      left join lateral (select id, email from contacts where workspace_id = me.workspace_id and lower(email) = lower(me.recipient) and deleted_at is null limit 1) c on true
      where me.id = ${mailEventId}::uuid`,
  );
}

/** A consent record appended to a contact's history. */
export async function recordConsentChanged(executor: Executor, consent: { workspaceId: string; contactId: string; status: string; source: string }): Promise<void> {
  await recordFromSelect(
    executor,
    sql`
      select workspace_id, 'consent.changed' as type, now() as occurred_at,
             jsonb_build_object('contactId', id, 'email', email, 'status', ${consent.status}::text, 'source', ${consent.source}::text) as data
      from contacts where id = ${consent.contactId}::uuid and workspace_id = ${consent.workspaceId}::uuid`,
  );
}

/**
 * For the CSV import's one-statement append: CTEs over `appended` (INSERT INTO consents …
 * RETURNING workspace_id, contact_id, status, source, at, seq), the same `consent.changed` as
 * recordConsentChanged for each record that became its contact's consent. A record dated before
 * the contact's latest is kept as history only, so it reports nothing. Starts with a comma.
 */
export function importedConsentChangedCtes(): SQL {
  return sql`,
    ${webhookOutboxCtes(sql`
      select a.workspace_id, 'consent.changed'::text as type, now() as occurred_at,
             jsonb_build_object('contactId', a.contact_id, 'email', c.email, 'status', a.status::text, 'source', a.source) as data
      from appended a
      join contacts c on c.id = a.contact_id and c.workspace_id = a.workspace_id
      -- The statement sees the history as it was before this append: a newer record there wins,
      -- by the same (at, seq) order that decides the contact's current consent.
      where not exists (select 1 from consents o where o.workspace_id = a.workspace_id and o.contact_id = a.contact_id and (o.at, o.seq) > (a.at, a.seq))`)}`;
}

interface SuppressionFact {
  id: string;
  workspaceId: string;
  /** Null once the contact was purged: the entry then survives only as its keyed hash. */
  email: string | null;
  scope: string;
  reason: string;
  source: string | null;
}

const suppressionData = (row: SuppressionFact) => {
  const campaignId = row.source?.startsWith('campaign:') ? row.source.slice('campaign:'.length) : undefined;
  return { suppressionId: row.id, email: row.email, scope: row.scope, reason: row.reason, ...(campaignId ? { campaignId } : {}) };
};

/** A new suppression entry; a recipient's own opt-out is also an `unsubscribe`. */
export async function recordSuppressionAdded(executor: Executor, row: SuppressionFact): Promise<void> {
  const occurredAt = new Date();
  const events: WebhookEventInput[] = [{ workspaceId: row.workspaceId, type: 'suppression.added', occurredAt, data: suppressionData(row) }];
  if (row.reason === 'unsubscribe') events.push({ workspaceId: row.workspaceId, type: 'unsubscribe', occurredAt, data: suppressionData(row) });
  await recordWebhookEvents(executor, events);
}

/** A recipient's own opt-out over an entry that already stopped their mail (suppression.repo.ts adoptEntry): no new entry, their wish. */
export async function recordRecipientUnsubscribed(executor: Executor, row: SuppressionFact): Promise<void> {
  await recordWebhookEvents(executor, [{ workspaceId: row.workspaceId, type: 'unsubscribe', occurredAt: new Date(), data: suppressionData(row) }]);
}

export async function recordSuppressionRemoved(executor: Executor, row: SuppressionFact): Promise<void> {
  await recordWebhookEvents(executor, [{ workspaceId: row.workspaceId, type: 'suppression.removed', occurredAt: new Date(), data: suppressionData(row) }]);
}

export async function recordCampaignStatusChanged(executor: Executor, change: { workspaceId: string; campaignId: string; from: string; to: string }): Promise<void> {
  if (change.from === change.to) return;
  await recordWebhookEvents(executor, [
    { workspaceId: change.workspaceId, type: 'campaign.status_changed', occurredAt: new Date(), data: { campaignId: change.campaignId, from: change.from, to: change.to } },
  ]);
}

/** For a one-statement transition: CTEs over `done` (RETURNING id, workspace_id), from → to. Starts with a comma. */
export function campaignStatusChangedCtes(from: string, to: string): SQL {
  return sql`,
    ${webhookOutboxCtes(sql`
      select workspace_id, 'campaign.status_changed'::text as type, now() as occurred_at,
             jsonb_build_object('campaignId', id, 'from', ${from}::text, 'to', ${to}::text) as data
      from done`)}`;
}

export async function recordMailboxNeedsReconnect(executor: Executor, mailbox: { id: string; workspaceId: string; email: string }): Promise<void> {
  await recordWebhookEvents(executor, [
    { workspaceId: mailbox.workspaceId, type: 'mailbox.needs_reconnect', occurredAt: new Date(), data: { mailboxId: mailbox.id, email: mailbox.email } },
  ]);
}
