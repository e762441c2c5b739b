import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { consents, type ConsentStatus } from '../db/schema.js';
import { recordAudit } from '../privacy/audit.js';
import { lockContactAddress, underAddressLock } from '../suppression/address-lock.js';
import { recordConsentChanged } from '../webhooks/facts.js';
import { createFollowUpRules } from '../campaigns/follow-ups.repo.js';

/*
 * A contact's consent history (P-10, P-11, P-18): the one way a record is appended, and the one
 * order that says which record is the contact's consent. Every writer of a single record — the
 * API, the recipient's opt-out and preference pages, a suppression removal with its consent
 * source — appends through `appendConsent` inside its own transaction; the CSV import appends a
 * batch in one statement (contacts.repo.ts `recordImportedConsents`) by the same order.
 */

export type ConsentRow = typeof consents.$inferSelect;

/**
 * Newest first: the first record of a contact in this order is its consent — the greatest `at`,
 * and of records at the same time (an import's date-only values are all midnight) the one written
 * last (`seq`, migration 0041). `alias`: the consents table's name in the statement.
 */
export const newestConsentFirst = (alias = 'consents') => sql.raw(`${alias}.at desc, ${alias}.seq desc`);

/**
 * SQL: `columns` (of `cs`) of the contact's latest consent record, or no row. One probe of
 * `consents_latest_idx (contact_id, workspace_id, at, seq)`, its last entry of (workspace,
 * contact), no sort — name the workspace, or the index cannot serve (BENCHMARKS.md: 600× slower
 * at 100k contacts).
 */
export const latestConsentSql = (workspaceId: SQL | string, contactId: SQL, columns: SQL) => sql`select ${columns} from consents cs
  where cs.workspace_id = ${workspaceId} and cs.contact_id = ${contactId}
  order by ${newestConsentFirst('cs')} limit 1`;

/** The contact's current consent: its latest record's status (P-11), if it has any. */
export async function latestConsentStatus(db: Db, workspaceId: string, contactId: string): Promise<ConsentStatus | undefined> {
  const [row] = rowsOf<{ status: ConsentStatus }>(await db.execute(latestConsentSql(sql`${workspaceId}::uuid`, sql`${contactId}::uuid`, sql`cs.status`)));
  return row?.status;
}

export interface ConsentValues {
  workspaceId: string;
  contactId: string;
  status: ConsentStatus;
  source: string;
  policyVersion: string;
  /** Who recorded it, as the history names them (`user:<id>`, `recipient`, …). */
  actor: string;
}

/**
 * A withdrawal (records appended `opted_out`) ends these contacts' sequences it stops, in the
 * transaction that appends them, after their opt-out locks: their queued later steps in marketing
 * campaigns that the gate now refuses `no_consent` are skipped with that reason, and a campaign
 * with nothing left completes (campaigns/follow-ups.repo.ts skipFollowUps; the gate's verdict,
 * gate-sql.ts, so a step it would still send, or refuse for another reason, stays). The single
 * append and the import's batch both end here. Before, the follow-ups waited for their day.
 */
export const endWithdrawnSequences = (db: Db, workspaceId: string, contactIds: string[]) =>
  createFollowUpRules(db).skipFollowUps(workspaceId, { reason: 'no_consent', contactIds }, new Date());

/**
 * Appends one consent record under the contact's opt-out locks (address-lock.ts: its address and
 * those of its unsent sends, so an opt-out and a send's claim serialize, invariant 1), with its
 * evidence — a `consent.recorded` audit row, `audit.actor` as the audit log names who (the
 * compliance report reads it) — and its `consent.changed` webhook event; an opt-out ends the
 * contact's follow-ups it stops (endWithdrawnSequences). Inside the caller's transaction (`db`)
 * it is a savepoint and all of it commits with the caller; alone, its own.
 */
export function appendConsent(db: Db, values: ConsentValues, audit: { actor: string; requestId?: string | null }): Promise<ConsentRow> {
  return underAddressLock(
    db,
    (tx) => lockContactAddress(tx, values.contactId),
    async (tx) => {
      const [row] = await tx.insert(consents).values(values).returning();
      await recordAudit(tx, {
        workspaceId: values.workspaceId,
        actor: audit.actor,
        action: 'consent.recorded',
        subjectType: 'contact',
        subjectId: values.contactId,
        detail: { consentId: row!.id, status: row!.status, source: row!.source, policyVersion: row!.policyVersion },
        requestId: audit.requestId,
      });
      await recordConsentChanged(tx, values);
      if (values.status === 'opted_out') await endWithdrawnSequences(tx, values.workspaceId, [values.contactId]);
      return row!;
    },
  );
}
