import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';

/*
 * Invariant 1: a send's claim and an opt-out for the same workspace + address serialize.
 * Both take this transaction-scoped advisory lock before they read or write, so an opt-out
 * cannot commit between a claim's re-check and the claim's commit; once an opt-out has
 * committed, every later claim sees it. The key is a 64-bit hash of
 * "<workspace id>:<lower(address)>" (a collision only makes two addresses wait for each
 * other). Held until the transaction ends: call these inside the transaction that claims
 * or writes the opt-out. Works the same on PGlite (one connection, so it never waits) and
 * on a server.
 */
const lockKey = (workspaceId: SQL, email: SQL) => sql`hashtextextended(${workspaceId}::text || ':' || lower(${email}), 0)`;

/** Locks the addresses of one workspace, in key order so two multi-address transactions cannot deadlock. */
export async function lockAddresses(db: Db, workspaceId: string, emails: string[]): Promise<void> {
  const distinct = [...new Set(emails.map((e) => e.toLowerCase()))];
  if (distinct.length === 0) return;
  if (distinct.length === 1) {
    await db.execute(sql`select pg_advisory_xact_lock(${lockKey(sql`${workspaceId}`, sql`${distinct[0]}`)})`);
    return;
  }
  await db.execute(sql`
    select pg_advisory_xact_lock(k) from (
      select distinct ${lockKey(sql`${workspaceId}`, sql`e`)} as k from unnest(array[${sql.join(
        distinct.map((e) => sql`${e}`),
        sql`, `,
      )}]::text[]) as e
    ) keys order by k`);
}

/**
 * The same lock for a contact (a consent record names the contact, not an address): its
 * address now, and the addresses its campaign sends not yet sent will go to — the ledger keeps
 * the address of the launch, so after the contact's address changed a claim locks the old one,
 * and a consent opt-out must wait for that claim too (the claim re-checks consent by contact).
 * In key order, one statement (an index probe by contact).
 */
export async function lockContactAddress(db: Db, contactId: string): Promise<void> {
  await db.execute(sql`
    select pg_advisory_xact_lock(k) from (
      select distinct ${lockKey(sql`a.workspace_id`, sql`a.email`)} as k from (
        select c.workspace_id, c.email from contacts c where c.id = ${contactId}::uuid
        union all
        select s.workspace_id, s.email from campaign_sends s where s.contact_id = ${contactId}::uuid and s.status in ('queued', 'sending')
      ) a
    ) keys order by k`);
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
