import { sql, type SQL } from 'drizzle-orm';

/*
 * Who may be mailed by a campaign, as SQL fragments: consent and a valid address. Preflight
 * counts with them over the whole audience and the send claim re-checks each message with them,
 * so the two can never disagree. Whether an address is suppressed is not decided here: that is
 * suppression/suppressed-sql.ts, the one rule 1:1 mail uses too.
 *
 * The consent lookup is shaped for `consents_latest_idx (contact_id, workspace_id, at, seq)`: the
 * latest record is the last index entry of (workspace, contact), found without a sort. A lookup
 * that omits the workspace cannot use it (each contact then scanned every consent of the
 * database: 600× slower at 100k contacts, see BENCHMARKS.md).
 */

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
