import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray } from '../db/pg-array.js';

/*
 * Invariant 1: a send's claim and an opt-out for the same workspace + address serialize.
 * Both take this transaction-scoped advisory lock before they read or write, so an opt-out
 * cannot commit between a claim's re-check and the claim's commit; once an opt-out has
 * committed, every later claim sees it. The key is a 64-bit hash of
 * "<workspace id>:<lower(address)>" (a collision only makes two addresses wait for each
 * other). Held until the transaction ends: call these inside the transaction that claims
 * or writes the opt-out. Works the same on PGlite (one connection, so it never waits) and
 * on a server. The same lock orders an out-of-office's deferral of a recipient's follow-ups and
 * the sent record that queues the next one (campaigns/auto-reply-hold-sql.ts holdOrderLock).
 */
const lockKey = (workspaceId: SQL, email: SQL) => sql`hashtextextended(${workspaceId}::text || ':' || lower(${email}), 0)`;

/** Locks the addresses of one workspace, in key order so two multi-address transactions cannot deadlock. */
export async function lockAddresses(db: Db, workspaceId: string, emails: string[]): Promise<void> {
  const distinct = [...new Set(emails.map((e) => e.toLowerCase()))];
  if (distinct.length === 0) return;
  if (distinct.length === 1) {
    await db.execute(sql`select pg_advisory_xact_lock(${lockKey(sql`${workspaceId}::uuid`, sql`${distinct[0]}`)})`);
    return;
  }
  await lockRows(db, givenAddresses(workspaceId, distinct));
}

/** Addresses of one workspace as (workspace_id, email) rows. */
const givenAddresses = (workspaceId: string, emails: string[]) =>
  sql`select ${workspaceId}::uuid as workspace_id, e as email from unnest(${pgArray(emails)}::text[]) as e`;

/**
 * The (workspace_id, email) pairs a contact's opt-out locks (a consent record names the
 * contact, not an address): its address now, and the addresses its campaign sends not yet sent
 * will go to — the ledger keeps the address of the launch, so after the contact's address
 * changed a claim locks the old one, and a consent opt-out must wait for that claim too (the
 * claim re-checks consent by contact). An index probe by contact.
 */
const contactAddresses = (contactIds: SQL) => sql`
  select c.workspace_id, c.email from contacts c where c.id = any(${contactIds})
  union all
  select s.workspace_id, s.email from campaign_sends s where s.contact_id = any(${contactIds}) and s.status in ('queued', 'sending')`;

/**
 * Consents given by address (a CSV import): those addresses, and for the live contacts at them
 * what lockContactAddress takes — a contact whose address changed since a launch has its unsent
 * sends, and their claims, under the old one.
 */
export async function lockAddressesWithTheirContacts(db: Db, workspaceId: string, emails: string[]): Promise<void> {
  const distinct = [...new Set(emails.map((e) => e.toLowerCase()))];
  if (distinct.length === 0) return;
  const contactIds = sql`array(select c.id from contacts c where c.workspace_id = ${workspaceId}::uuid and lower(c.email) = any(${pgArray(distinct)}::text[]) and c.deleted_at is null)`;
  await lockRows(db, sql`${givenAddresses(workspaceId, distinct)} union all ${contactAddresses(contactIds)}`);
}

/**
 * The address locks of the campaign sends a condition on `campaign_sends s` picks (their
 * workspace and the address the ledger holds, which the gate's claim of them locks too).
 */
export const lockAddressesOfSends = (db: Db, sends: SQL) => lockRows(db, sql`select s.workspace_id, s.email from campaign_sends s where ${sends}`);

/** Takes the locks of these (workspace_id, email) rows, in key order, in one statement. */
const lockRows = (db: Db, rows: SQL) =>
  db.execute(sql`
    select pg_advisory_xact_lock(k) from (
      select distinct ${lockKey(sql`a.workspace_id`, sql`a.email`)} as k from (${rows}) a
    ) keys order by k`);

/**
 * The same lock for a contact (above: its address now and those of its unsent campaign sends);
 * with `workspaceId`, only when the contact is that workspace's (an id from a request).
 */
export async function lockContactAddress(db: Db, contactId: string, workspaceId?: string): Promise<void> {
  const ids = workspaceId
    ? sql`array(select c.id from contacts c where c.id = ${contactId}::uuid and c.workspace_id = ${workspaceId}::uuid)`
    : sql`array[${contactId}]::uuid[]`;
  await lockRows(db, contactAddresses(ids));
}

/**
 * An opt-out that covers addresses and contacts at once (a recipient's link: its address, and
 * the contacts its mail was sent for): all their locks in one key order, before writes that take
 * each again one by one (a no-op then) — one by one they could take two in the opposite order
 * of a send to both.
 */
export async function lockAddressesAndContacts(db: Db, workspaceId: string, emails: string[], contactIds: string[]): Promise<void> {
  await lockRows(db, sql`${givenAddresses(workspaceId, emails)} union all ${contactAddresses(sql`${pgArray(contactIds)}::uuid[]`)}`);
}

/**
 * A contact's address changes under a lock of the workspace, taken shared by every launch
 * in progress (audience-sql.ts reads the audience's addresses twice, its recipients and then its
 * sends joined to them by address: a change committing between the two statements left that
 * contact out of the campaign with no ledger row, an attacker's finding). Launches share it; a
 * change waits for the launches in progress — a launch of 100,000 holds it about 5 s on a
 * server, so a change waits at most ADDRESS_CHANGE_WAIT_SECONDS, then is refused (lock_timeout,
 * 55P03: a 409 with Retry-After) — and launches wait for a change (milliseconds). Nothing that
 * holds an address lock takes this one, so it adds no deadlock.
 */
export const ADDRESS_CHANGE_WAIT_SECONDS = 3;
const addressChangesKey = (workspaceId: string) => sql`hashtextextended('contact-address-changes:' || ${workspaceId}::text, 0)`;

/** A launch's hold (above): no contact of the workspace changes its address until its transaction ends. */
export async function holdAddressChanges(db: Db, workspaceId: string): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock_shared(${addressChangesKey(workspaceId)})`);
}

/**
 * Before a contact's address changes, in its transaction: the workspace's address-change lock
 * (above), then the opt-out locks of the contact's addresses (now, and of its unsent sends) and
 * of the new one. An opt-out by the old address (a recipient's link) then either committed first
 * — the change carries the contact's new consent record with it — or comes after and finds the
 * contact moved from the address its mail went to (suppression.service.ts movedContacts).
 */
export async function lockAddressChange(db: Db, workspaceId: string, contactId: string, newEmail: string): Promise<void> {
  // The wait for launches only: a 55P03 means a launch (the opt-out locks and the row wait as usual).
  await db.execute(sql.raw(`set local lock_timeout = '${ADDRESS_CHANGE_WAIT_SECONDS}s'`));
  await db.execute(sql`select pg_advisory_xact_lock(${addressChangesKey(workspaceId)})`);
  await db.execute(sql.raw(`set local lock_timeout = 0`));
  await lockAddressesAndContacts(db, workspaceId, [newEmail], [contactId]);
}

/**
 * Runs an opt-out write under the address lock. Inside a caller's transaction this is a
 * savepoint and the lock lasts until the caller commits; alone it is its own transaction.
 */
export function underAddressLock<T>(db: Db, lock: (tx: Db) => Promise<void>, write: (tx: Db) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await lock(tx as unknown as Db);
    return write(tx as unknown as Db);
  });
}
