import { auditLog } from '../db/schema.js';
import type { Db } from '../db/connect.js';

/**
 * One row of evidence (POLICY.md "Evidence"). `actor` comes from `actorOf(auth)` for a
 * caller, `recipient:<id>` for a recipient's own action, `system:<job>` for a job.
 * `requestId` ties the row to the request log line that caused it.
 */
export interface AuditEntry {
  workspaceId: string;
  actor: string;
  action: string;
  subjectType: string;
  subjectId?: string | null;
  /** Ids, counts, bases and reasons only: never a mail body, subject, token or secret. */
  detail?: Record<string, unknown>;
  requestId?: string | null;
}

/** Anything that can run an insert: the database or an open transaction (a unit of work). */
type Executor = Pick<Db, 'insert'>;

/** The one way anything writes the audit log; pass the transaction the audited change runs in. */
export async function recordAudit(executor: Executor, entry: AuditEntry): Promise<void> {
  await executor.insert(auditLog).values({
    workspaceId: entry.workspaceId,
    actor: entry.actor,
    action: entry.action,
    subjectType: entry.subjectType,
    subjectId: entry.subjectId ?? null,
    detail: entry.detail ?? {},
    requestId: entry.requestId ?? null,
  });
}
