import { sql, type SQL } from 'drizzle-orm';

/*
 * Who may be mailed, as SQL fragments: the one place that says "suppressed" and "opted in"
 * for campaigns. Preflight counts with them over the whole audience and the send claim
 * re-checks each message with them, so the two can never disagree.
 *
 * Both lookups are shaped for their indexes, because they run once per recipient:
 * - suppressions: `suppressions_workspace_email_scope_unique (workspace_id, lower(email), scope)`,
 *   and for an entry whose contact was purged (address cleared, keyed hash kept, P-13)
 *   `suppressions_workspace_hash_scope_unique (workspace_id, address_hash, scope)`;
 * - consents: `consents_latest_idx (contact_id, workspace_id, at, seq)` — the latest record is
 *   the last index entry of (workspace, contact), found without a sort.
 * A lookup that omits the workspace cannot use either (each contact then scanned every
 * consent of the database: 600× slower at 100k contacts, see BENCHMARKS.md).
 */

/** The suppression scopes that stop a campaign of this topic: everything, or its own topic. */
const scopesFor = (topic: SQL | string | null) => sql`('all', 'topic:' || ${topic})`;

/**
 * SQL: is this address suppressed for the campaign (everything, or the campaign's topic)?
 * Matched by the address, or by its keyed hash (`addressHash`: the contact's or recipient's
 * `address_hash` column, written by the app) — an opt-out whose address was purged keeps
 * only the hash. Two index probes per address, never a scan of the list.
 */
export const suppressedSql = (workspaceId: SQL | string, email: SQL, addressHash: SQL, topic: SQL | string | null, options: { probesOnly?: boolean } = {}) => {
  const only = options.probesOnly ? PROBE_ONLY : sql``;
  return sql`(exists (
  select 1 from suppressions sp
  where sp.workspace_id = ${workspaceId} and lower(sp.email) = lower(${email})
    and sp.scope in ${scopesFor(topic)}${only}) or exists (
  select 1 from suppressions sh
  where sh.workspace_id = ${workspaceId} and sh.address_hash = ${addressHash}
    and sh.scope in ${scopesFor(topic)}${only}))`;
};

/**
 * Appended to an `exists (…)` subquery: it stays an index probe per row. Without it PostgreSQL
 * may plan the alternative of hashing the subquery's whole table once per statement — cheap
 * while the table is small, and on PGlite a generic plan (the send claim's, plan-hints.ts)
 * chosen then is kept as the table grows (no autovacuum, no re-plan): the claim then read every
 * workspace's suppressions each round (4 ms → 340 ms a claim after 300,000 suppressions were
 * added; BENCHMARKS.md, "sixth pass"). `offset 0` keeps PostgreSQL from turning the EXISTS into
 * a hashable `= ANY` at all.
 */
export const PROBE_ONLY = sql` offset 0`;

/**
 * SQL: does the contact's latest consent record say opted_in (P-10)? The latest is the one
 * with the greatest `at`, and on a tie the one written last (the greatest `seq`, migration 0041). Pass the workspace when the caller
 * has it; without it, it is read from the contact (a primary-key lookup) so the index still serves.
 */
export const optedInSql = (
  contactId: SQL,
  workspaceId: SQL | string = sql`(select c.workspace_id from contacts c where c.id = ${contactId})`,
) => sql`coalesce((
  select cs.status = 'opted_in' from consents cs
  where cs.workspace_id = ${workspaceId} and cs.contact_id = ${contactId}
  order by cs.at desc, cs.seq desc limit 1), false)`;

/** SQL: an address preflight counts as invalid (it would never be attempted by a person). */
export const invalidAddressSql = (email: SQL) => sql`(${email} !~ '^[^@[:space:]]+@[^@[:space:]]+[.][^@[:space:]]+$')`;
