import { asc, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { mailboxes } from '../db/schema.js';
import { rowsOf } from '../db/pg-array.js';

/** One audit row as the report reads it; `completedAt` is set on a deletion request once its `deletion.completed` exists. */
export interface ReportAuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  subjectType: string;
  subjectId: string | null;
  detail: Record<string, unknown>;
  requestId: string | null;
  completedAt: Date | null;
  /** Where the next page starts: `at` to the microsecond (a Date keeps milliseconds only) and the id. */
  cursor: ReportCursor;
}

export interface ReportCursor {
  /** `at` in UTC with microseconds, exactly as stored. */
  at: string;
  id: string;
}

/** The compliance report's reads: the audit log of one workspace by time, in pages, and the mailboxes' current scopes. */
export function createComplianceRepo(db: Db) {
  return {
    /**
     * A page of the workspace's audit rows in [from, to), oldest first, after `cursor`.
     * A completion is listed with its request, not as a row of its own.
     */
    async auditPage(workspaceId: string, from: Date, to: Date, cursor: ReportCursor | undefined, limit: number): Promise<ReportAuditRow[]> {
      const after = cursor ? sql`and (r.at, r.id) > (${cursor.at}::timestamptz, ${cursor.id}::uuid)` : sql``;
      const rows = rowsOf<{ id: string; at: Date | string; actor: string; action: string; subject_type: string; subject_id: string | null; detail: Record<string, unknown>; request_id: string | null; completed_at: Date | string | null; at_key: string }>(
        await db.execute(sql`
          select r.id, r.at, to_char(r.at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at_key, r.actor, r.action, r.subject_type, r.subject_id, r.detail, r.request_id, done.at as completed_at
          from audit_log r
          left join lateral (
            select c.at from audit_log c
            where r.action = 'deletion.requested' and c.workspace_id = r.workspace_id and c.action = 'deletion.completed'
              -- coalesce, not "is not distinct from", so that the partial index (migration 0047) serves
              -- it; subject ids are ids, never '', so a missing one still matches only a missing one.
              and c.subject_type = r.subject_type and coalesce(c.subject_id, '') = coalesce(r.subject_id, '') and c.at >= r.at
            order by c.at limit 1
          ) done on true
          where r.workspace_id = ${workspaceId}::uuid and r.at >= ${from.toISOString()}::timestamptz and r.at < ${to.toISOString()}::timestamptz
            and r.action <> 'deletion.completed' ${after}
          order by r.at, r.id
          limit ${limit}`),
      );
      return rows.map((r) => ({
        id: r.id,
        at: new Date(r.at),
        actor: r.actor,
        action: r.action,
        subjectType: r.subject_type,
        subjectId: r.subject_id,
        detail: r.detail,
        requestId: r.request_id,
        completedAt: r.completed_at === null ? null : new Date(r.completed_at),
        cursor: { at: r.at_key, id: r.id },
      }));
    },

    /** The scopes each connected mailbox holds now, and the policy version it was connected under. */
    async mailboxScopes(workspaceId: string) {
      return db
        .select({ mailboxId: mailboxes.id, email: mailboxes.email, ownerUserId: mailboxes.userId, scopes: mailboxes.scopes, policyVersion: mailboxes.disclosureVersion, connectedAt: mailboxes.connectedAt })
        .from(mailboxes)
        .where(eq(mailboxes.workspaceId, workspaceId))
        .orderBy(asc(mailboxes.connectedAt), asc(mailboxes.id));
    },
  };
}

export type ComplianceRepo = ReturnType<typeof createComplianceRepo>;
