import { sql, type SQL } from 'drizzle-orm';
import { PROBE_ONLY } from '../db/plan-hints.js';

/*
 * "May this address be mailed?" — the one rule that says "suppressed", as an SQL predicate, for
 * every send path of a workspace: campaign preflight and launch over the whole audience
 * (campaigns/audience-sql.ts), the campaign send claim per message (campaigns/gate-sql.ts), and
 * 1:1 mail's claim over its recipients (suppression.repo.ts `findSuppressed`) — each inside the
 * transaction that holds the address locks (address-lock.ts), so it sees every opt-out that
 * committed before them.
 *
 * An address matches an entry by the address compared without case (the comparison key of
 * contacts/email-address.ts: stored addresses are trimmed when written), or by its keyed hash
 * (address-hash.ts) once the entry's contact was purged and only the hash is left (P-13). Two
 * index probes per address, never a scan of the list:
 * `suppressions_workspace_email_scope_unique (workspace_id, lower(email), scope)` and
 * `suppressions_workspace_hash_scope_unique (workspace_id, address_hash, scope)`. A lookup that
 * omits the workspace can use neither.
 */

/** The suppression scopes that stop mail of this topic: everything, or its own topic (no topic: `all` only). */
const scopesFor = (topic: SQL | string | null) => sql`('all', 'topic:' || ${topic})`;

/**
 * SQL: is this address suppressed for mail of `topic` (null: mail of no topic, 1:1 included)?
 * `addressHash`: the keyed hash of the same address (a contact's, recipient's or 1:1 send's
 * `address_hash`, written by the app). `probesOnly`: keep each lookup an index probe per row
 * even in a generic plan made on empty tables (plan-hints.ts `PROBE_ONLY`).
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
