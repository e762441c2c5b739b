import { sql, type SQL } from 'drizzle-orm';
import { latestConsentSql } from '../contacts/consent-records.js';

/*
 * Who may be mailed by a campaign, as SQL fragments: consent and a valid address. Preflight
 * counts with them over the whole audience and the send claim re-checks each message with them,
 * so the two can never disagree. Whether an address is suppressed is not decided here: that is
 * suppression/suppressed-sql.ts, the one rule 1:1 mail uses too.
 *
 * The consent lookup is the contacts feature's latest record (contacts/consent-records.ts
 * `latestConsentSql`, one index probe per contact when it names the workspace).
 */

/**
 * SQL: does the contact's latest consent record say opted_in (P-10)? Pass the workspace when the
 * caller has it; without it, it is read from the contact (a primary-key lookup) so the index
 * still serves.
 */
export const optedInSql = (
  contactId: SQL,
  workspaceId: SQL | string = sql`(select c.workspace_id from contacts c where c.id = ${contactId})`,
) => sql`coalesce((${latestConsentSql(workspaceId, contactId, sql`cs.status = 'opted_in'`)}), false)`;

/** SQL: an address preflight counts as invalid (it would never be attempted by a person). */
export const invalidAddressSql = (email: SQL) => sql`(${email} !~ '^[^@[:space:]]+@[^@[:space:]]+[.][^@[:space:]]+$')`;
