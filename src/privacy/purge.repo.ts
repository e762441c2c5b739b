import { sql, type SQL } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { ReadChangedBeforeLock } from '../db/pg-errors.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { messageBareAddresses, messages } from '../db/schema.js';
import { lockAddresses } from '../suppression/address-lock.js';
import { lockCampaignRollups, lockWorkspaceRollups } from '../tracking/rollups.repo.js';
import { recordAudit, type AuditEntry } from './audit.js';
import { addressesKnownBy } from './contact-addresses.js';
import { countAffected, eraseAddressReferences } from './purge-references.js';

/*
 * The statements of the purge (P-13): each removes, for real, one deleted item and
 * everything that names it. The service runs each item in its own transaction, so a purge
 * that stops halfway leaves every item either whole or gone, and the next run picks up
 * the rest (resumable, idempotent).
 */

export type PurgeKind = 'mailbox' | 'contact' | 'campaign' | 'workspace' | 'user';

const TABLE_OF: Record<PurgeKind, SQL> = {
  mailbox: sql`mailboxes`,
  contact: sql`contacts`,
  campaign: sql`campaigns`,
  workspace: sql`workspaces`,
  user: sql`users`,
};

export interface DueItem {
  id: string;
  purgeAfter: Date;
}

const uuidArray = (ids: string[]) => sql`${pgArray(ids)}::uuid[]`;

/**
 * Messages of a workspace that name the address as sender or recipient (bare, or as `Name <address>`):
 * found through the index of every message's bare addresses (migration 0047), the exists() the exact rule.
 */
const messagesNamingSql = (workspaceId: string, address: string) => sql`
  select ${messages.id} from ${messages}
  where ${messages.workspaceId} = ${workspaceId}::uuid
    and ${messageBareAddresses(messages)} @> array[${address}]::text[]
    and exists (
    select 1 from unnest(array[${messages.fromAddress}] || ${messages.toAddresses} || ${messages.ccAddresses} || ${messages.bccAddresses}) a(x)
    where lower(x) = ${address} or right(lower(x), ${address.length + 2}) = ${`<${address}>`})`;

function purgeQueries(db: Db) {
  return {
    /** Items of one kind whose purge date has come, oldest first. */
    async due(kind: PurgeKind, now: Date, limit: number): Promise<DueItem[]> {
      const rows = rowsOf<{ id: string; purge_after: string | Date }>(
        await db.execute(sql`
          select id, purge_after from ${TABLE_OF[kind]}
          where purge_after is not null and purge_after <= ${now.toISOString()}::timestamptz
          order by purge_after, id limit ${limit}`),
      );
      return rows.map((r) => ({ id: String(r.id), purgeAfter: new Date(r.purge_after) }));
    },

    audit: (entry: AuditEntry) => recordAudit(db, entry),

    /**
     * A deleted contact and everything that names it. What is keyed by an address (the
     * recipient row, its sends and tracking, mail that names the address, the suppression
     * entry's address, the address as a value in a campaign's segment or a legal request's
     * scope) goes for every address the contact was known by — its address now and those its
     * campaign mail went to before an address change (contact-addresses.ts) — except one a live
     * contact of the workspace holds now: then it is that contact's history. The suppression
     * entry stays, as the keyed hash alone: the opt-out outlives the contact.
     */
    async purgeContact(contactId: string, addressHash: (email: string) => string): Promise<{ workspaceId: string; removed: Record<string, number> } | undefined> {
      const contactRow = async (lock: SQL) =>
        rowsOf<{ workspace_id: string; deleted_at: unknown }>(await db.execute(sql`select workspace_id, deleted_at from contacts where id = ${contactId}::uuid ${lock}`))[0];
      const seen = await contactRow(sql``);
      if (!seen || seen.deleted_at === null) return undefined;
      const workspaceId = String(seen.workspace_id);
      // A concurrent opt-out or send claim for one of its addresses waits until the purge committed.
      // The address locks before the contact's row, the order of every other taker of both: a
      // sent record takes its recipient's address lock, then its next step's row takes the
      // contact's key (a foreign key). The other way round, a purge holding the contact's row
      // waited for a sent record's address lock while the record waited for the row (a deadlock).
      const locked = (await addressesKnownBy(db, workspaceId, [contactId])).map((k) => k.address);
      await lockAddresses(db, workspaceId, locked);
      const contact = await contactRow(sql`for update`);
      if (!contact || contact.deleted_at === null) return undefined;
      // Read again under the locks: an address change to one of them (it takes that lock) has
      // committed, or waits. One the contact was known by only since the first read is not
      // locked: the purge runs again (purge.service.ts), its locks taken in order.
      const known = await addressesKnownBy(db, workspaceId, [contactId]);
      if (known.some((k) => !locked.includes(k.address))) throw new ReadChangedBeforeLock("The contact's addresses");
      const free = known.filter((k) => !k.heldByAnother).map((k) => k.address);
      const freeList = sql`${pgArray(free)}::text[]`;

      const recipientIds = rowsOf<{ id: string }>(
        await db.execute(sql`select id from recipients where workspace_id = ${workspaceId}::uuid and lower(email) = any(${freeList})`),
      ).map((r) => String(r.id));
      const sends = rowsOf<{ id: string; message_id: string | null; campaign_id: string }>(
        await db.execute(sql`
          select id, message_id, campaign_id from campaign_sends
          where workspace_id = ${workspaceId}::uuid and (contact_id = ${contactId}::uuid or recipient_id = any(${uuidArray(recipientIds)}))`),
      );
      const sendIds = sends.map((s) => String(s.id));
      // A rollup pass over these sends' campaigns finishes first, or starts after this commits and skips them.
      await lockCampaignRollups(db, [...new Set(sends.map((s) => String(s.campaign_id)))]);
      // After the campaign locks (a campaign purge takes them first too), before any event is deleted.
      await lockSendsForPurge(db, sql`workspace_id = ${workspaceId}::uuid and id = any(${uuidArray(sendIds)})`);
      const messageIds = new Set(sends.filter((s) => s.message_id).map((s) => String(s.message_id)));
      const linked = rowsOf<{ id: string }>(await db.execute(sql`select message_id as id from message_contacts where contact_id = ${contactId}::uuid`));
      for (const m of linked) messageIds.add(String(m.id));
      for (const address of free) for (const m of rowsOf<{ id: string }>(await db.execute(messagesNamingSql(workspaceId, address)))) messageIds.add(String(m.id));
      const messages = uuidArray([...messageIds]);

      const removed: Record<string, number> = {};
      const ws = sql`workspace_id = ${workspaceId}::uuid`;
      removed.trackingEvents = await countAffected(db, sql`delete from tracking_events where ${ws} and send_id = any(${uuidArray(sendIds)})`);
      removed.trackingSendRollups = await countAffected(db, sql`delete from tracking_send_rollups where ${ws} and send_id = any(${uuidArray(sendIds)})`);
      // By campaign and recipient, the rollups' key (campaign first), over the workspace's
      // campaigns (a few hundred probes): the recipient alone read every campaign's rollups of
      // every workspace once per purged contact. Rollups exist only for campaigns of the
      // workspace: a campaign's purge deletes them before the campaign row.
      removed.trackingRecipientRollups = await countAffected(
        db,
        sql`delete from tracking_recipient_rollups where ${ws} and recipient_id = any(${uuidArray(recipientIds)})
            and campaign_id in (select id from campaigns where ${ws})`,
      );
      // Per-campaign totals stay (they name nobody): the ledger's trigger keeps these outcomes counted (migration 0045).
      await db.execute(sql`select set_config('inboxtrail.keep_send_counts', 'on', true)`);
      removed.sends = await countAffected(db, sql`delete from campaign_sends where ${ws} and id = any(${uuidArray(sendIds)})`);
      await db.execute(sql`select set_config('inboxtrail.keep_send_counts', 'off', true)`);
      removed.mailEvents = await countAffected(db, sql`delete from mail_events where ${ws} and (message_id = any(${messages}) or lower(recipient) = any(${freeList}))`);
      await keepBudgetCounts(db, messages);
      removed.messages = await countAffected(db, sql`delete from messages where ${ws} and id = any(${messages})`);
      // Webhook events about them (written before or after the delete; deliveries go with them):
      // their payloads name the address, and no delivery is owed about a person who is gone.
      removed.webhookEvents = await countAffected(
        db,
        // Each branch names its index's predicate (`data ? …`, migration 0050), or the planner cannot use it.
        sql`delete from webhook_events where ${ws} and ((data ? 'contactId' and data ->> 'contactId' = ${contactId})
            or (data ? 'email' and lower(data ->> 'email') = any(${freeList})))`,
      );
      removed.recipients = await countAffected(db, sql`delete from recipients where ${ws} and id = any(${uuidArray(recipientIds)})`);
      removed.suppressionAddressesHashed = 0;
      for (const address of free) {
        removed.suppressionAddressesHashed += await countAffected(
          db,
          sql`update suppressions set email = null, address_hash = ${addressHash(address)} where ${ws} and lower(email) = ${address}`,
        );
        for (const [kind, n] of Object.entries(await eraseAddressReferences(db, workspaceId, address, addressHash(address)))) removed[kind] = (removed[kind] ?? 0) + n;
      }
      const [consentRow] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from consents where contact_id = ${contactId}::uuid`));
      removed.consents = Number(consentRow?.n ?? 0);
      // Consents and timeline links go with the contact (foreign keys cascade).
      removed.contacts = await countAffected(db, sql`delete from contacts where id = ${contactId}::uuid`);
      return { workspaceId, removed };
    },

    /** A deleted campaign: its ledger, links, tracking and the mail it sent. Recipient rows stay (other campaigns and unsubscribe links name them). */
    async purgeCampaign(campaignId: string): Promise<{ workspaceId: string; removed: Record<string, number> } | undefined> {
      // Before the campaign row's lock: a pass holding this lock needs that row for its foreign keys.
      await lockCampaignRollups(db, [campaignId]);
      // `no key update`: a tracking write holding the campaign row's key share (a foreign key) may
      // still be waited for by lockSendsForPurge; the final delete takes the full lock.
      const [campaign] = rowsOf<{ workspace_id: string; deleted_at: unknown }>(
        await db.execute(sql`select workspace_id, deleted_at from campaigns where id = ${campaignId}::uuid for no key update`),
      );
      if (!campaign || campaign.deleted_at === null) return undefined;
      const workspaceId = String(campaign.workspace_id);
      const scope = sql`workspace_id = ${workspaceId}::uuid and campaign_id = ${campaignId}::uuid`;
      await lockSendsForPurge(db, scope);
      const removed: Record<string, number> = {};
      removed.trackingEvents = await countAffected(db, sql`delete from tracking_events where ${scope}`);
      removed.trackingRollupPending = await deletePendingRollups(db, scope);
      removed.trackingSendRollups = await countAffected(db, sql`delete from tracking_send_rollups where ${scope}`);
      removed.trackingRecipientRollups = await countAffected(db, sql`delete from tracking_recipient_rollups where ${scope}`);
      const sentMessages = sql`select message_id from campaign_sends where ${scope} and message_id is not null`;
      await keepBudgetCounts(db, sql`array(${sentMessages})`);
      removed.messages = await countAffected(db, sql`delete from messages where workspace_id = ${workspaceId}::uuid and id in (${sentMessages})`);
      // The ledger, links and rollups go with the campaign (foreign keys cascade).
      removed.sends = Number(
        rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from campaign_sends where ${scope}`))[0]?.n ?? 0,
      );
      removed.campaigns = await countAffected(db, sql`delete from campaigns where id = ${campaignId}::uuid`);
      return { workspaceId, removed };
    },

    /**
     * A disconnected mailbox: anything synced still left, then the row (its shared limits
     * cascade). Mail we sent from it stays with the workspace's contacts and campaigns
     * (`mailbox_id` becomes null) and goes when they, or the workspace, are purged.
     */
    async purgeMailbox(mailboxId: string): Promise<{ workspaceId: string; removed: Record<string, number> } | undefined> {
      const [mailbox] = rowsOf<{ workspace_id: string; deleted_at: unknown }>(
        await db.execute(sql`select workspace_id, deleted_at from mailboxes where id = ${mailboxId}::uuid for update`),
      );
      if (!mailbox || mailbox.deleted_at === null) return undefined;
      const removed: Record<string, number> = {};
      removed.syncedMessages = await countAffected(db, sql`delete from messages where mailbox_id = ${mailboxId}::uuid and synced`);
      removed.mailboxes = await countAffected(db, sql`delete from mailboxes where id = ${mailboxId}::uuid`);
      return { workspaceId: String(mailbox.workspace_id), removed };
    },

    /**
     * A workspace closed with its sole owner: the tables that carry workspace_id without a
     * foreign key first, then the workspace, which cascades to everything else it holds.
     * The audit log stays: it holds ids and keyed hashes only, and it is the evidence that
     * the deletion happened (its own retention is the audit log's business).
     */
    async purgeWorkspace(workspaceId: string): Promise<{ workspaceId: string; removed: Record<string, number> } | undefined> {
      // First of all: rollup passes over the workspace finish (and later ones wait), so none
      // writes rollup rows back after the deletes below (rollups.repo.ts).
      await lockWorkspaceRollups(db, workspaceId);
      // `no key update`, as for a campaign: writers' foreign keys hold the row's key share.
      const [workspace] = rowsOf<{ deleted_at: unknown }>(
        await db.execute(sql`select deleted_at from workspaces where id = ${workspaceId}::uuid for no key update`),
      );
      if (!workspace || workspace.deleted_at === null) return undefined;
      const ws = sql`workspace_id = ${workspaceId}::uuid`;
      await lockSendsForPurge(db, ws);
      const removed: Record<string, number> = {};
      removed.trackingEvents = await countAffected(db, sql`delete from tracking_events where ${ws}`);
      removed.trackingRollupPending = await deletePendingRollups(db, ws);
      removed.trackingSendRollups = await countAffected(db, sql`delete from tracking_send_rollups where ${ws}`);
      removed.trackingRecipientRollups = await countAffected(db, sql`delete from tracking_recipient_rollups where ${ws}`);
      removed.trackingRollups = await countAffected(db, sql`delete from tracking_rollups where ${ws}`);
      removed.workspaces = await countAffected(db, sql`delete from workspaces where id = ${workspaceId}::uuid`);
      return { workspaceId, removed };
    },

    /** A closed account: invitations and pending signups naming its address, then the user (memberships cascade). */
    async purgeUser(userId: string): Promise<{ workspaceIds: string[]; removed: Record<string, number> } | undefined> {
      const [user] = rowsOf<{ email: string; deleted_at: unknown }>(await db.execute(sql`select email, deleted_at from users where id = ${userId}::uuid for update`));
      if (!user || user.deleted_at === null) return undefined;
      const email = String(user.email);
      // Where the closure was recorded: the completion is recorded there too.
      const workspaceIds = rowsOf<{ workspace_id: string }>(
        await db.execute(sql`
          select distinct workspace_id from audit_log
          where action = 'deletion.requested' and subject_type = 'user' and subject_id = ${userId}`),
      ).map((r) => String(r.workspace_id));
      const removed: Record<string, number> = {};
      removed.invitations = await countAffected(db, sql`delete from invitations where lower(email) = lower(${email})`);
      removed.signupRequests = await countAffected(db, sql`delete from signup_requests where lower(email) = lower(${email})`);
      removed.users = await countAffected(db, sql`delete from users where id = ${userId}::uuid`);
      return { workspaceIds, removed };
    },
  };
}

export type PurgeQueries = ReturnType<typeof purgeQueries>;

export function createPurgeRepo(db: Db) {
  return { ...purgeQueries(db), transaction: inTransaction(db, purgeQueries) };
}

export type PurgeRepo = ReturnType<typeof createPurgeRepo>;

/**
 * Before a purge deletes messages (a uuid[] expression): those its mailbox's daily budget still
 * counts (sent in the last 24 h) are added to a count per mailbox and minute — no address, no
 * content — which the budget counts too (migration 0026): a purge never gives a mailbox more
 * sends to Gmail than its budget. A mailbox purge needs none: the mailbox goes with its mail.
 */
async function keepBudgetCounts(db: Db, messageIds: SQL): Promise<void> {
  await db.execute(sql`select mailbox_record_purged_sends(${messageIds})`);
}

/**
 * Locks the sends a purge deletes, in id order, before it deletes any tracking event. The
 * tracking writer's probe takes `for key share` on each send it writes events for
 * (tracking/events.repo.ts), so a write that saw a send has committed before this returns (the
 * purge's later statements see its events, webhook rows and pending records, and delete them),
 * and a write that comes after waits for the purge and finds the send gone: no event of a
 * purged person is left behind. Id order, like the writer's batch: the two never deadlock.
 */
async function lockSendsForPurge(db: Db, scope: SQL): Promise<void> {
  await db.execute(sql`select count(*) from (select 1 from campaign_sends where ${scope} order by id for update) locked`);
}

/**
 * Pending rollup records (send ids, times, verdicts) of what is purged. Rows a rollup pass has
 * claimed are left to it (`skip locked`: waiting for them could deadlock with that pass's
 * campaign lock); it finds their sends gone, skips them and deletes the rows.
 */
function deletePendingRollups(db: Db, scope: SQL): Promise<number> {
  return countAffected(db, sql`delete from tracking_rollup_pending where id in (select id from tracking_rollup_pending where ${scope} for update skip locked)`);
}
