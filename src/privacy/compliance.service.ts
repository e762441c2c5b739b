import type { AuthContext } from '../auth/auth.service.js';
import { ForbiddenError, ValidationError } from '../errors.js';
import type { ComplianceRepo, ReportAuditRow, ReportCursor } from './compliance.repo.js';
import type { PolicyVersionsRepo } from './policy-versions.repo.js';
import { csvLine } from '../http/csv-download.js';
import { DAY_MS } from '../time.js';

/** A report covers at most this many days: the range bounds what one request reads. */
export const REPORT_MAX_DAYS = 366;
/** JSON is built in memory, so it stops here (`truncated: true`); the CSV streams every row. */
export const REPORT_JSON_MAX_ENTRIES = 10_000;
const PAGE_SIZE = 1_000;

/** Report sections, each the audit actions it lists (first match wins; the rest land in `other`). */
const SECTIONS = [
  ['gmailAccess', (a: string) => a.startsWith('gmail.content_')],
  ['grants', (a: string) => a.startsWith('grant.')],
  ['consentChanges', (a: string) => a.startsWith('consent.')],
  ['suppressionChanges', (a: string) => a.startsWith('suppression.')],
  ['deletionRequests', (a: string) => a === 'deletion.requested'],
  ['legalDisclosures', (a: string) => a.startsWith('legal.')],
  ['keyRotations', (a: string) => a === 'keys.rotated'],
  ['mailboxConnections', (a: string) => a.startsWith('mailbox.')],
  ['membership', (a: string) => a.startsWith('member.') || a.startsWith('invitation.')],
] as const;
export type ReportSection = (typeof SECTIONS)[number][0] | 'other';
export const REPORT_SECTIONS: readonly ReportSection[] = [...SECTIONS.map(([name]) => name), 'other'];

const sectionOf = (action: string): ReportSection => SECTIONS.find(([, matches]) => matches(action))?.[0] ?? 'other';

export interface ReportRange {
  from: Date;
  to: Date;
}

/** One line of the report: an audit row, with the basis of a Gmail access and the completion of a deletion lifted out. */
function presentEntry(row: ReportAuditRow) {
  const text = (key: string) => (typeof row.detail[key] === 'string' ? (row.detail[key] as string) : null);
  return {
    at: row.at,
    action: row.action,
    actor: row.actor,
    subjectType: row.subjectType,
    subjectId: row.subjectId,
    basis: text('basis'),
    purpose: text('purpose'),
    caseReference: text('caseReference'),
    ...(row.action === 'deletion.requested' ? { completedAt: row.completedAt } : {}),
    requestId: row.requestId,
    detail: row.detail,
  };
}
export type ReportEntry = ReturnType<typeof presentEntry>;

const CSV_COLUMNS = ['section', 'at', 'action', 'actor', 'subject_type', 'subject_id', 'basis', 'purpose', 'case_reference', 'completed_at', 'request_id', 'detail'];


/**
 * The compliance evidence report (POLICY.md "Evidence", issue 11): built from the audit log
 * (and the mailboxes' current scopes), never by hand, for a bounded range, read in pages.
 */
export function createComplianceService(deps: { repo: ComplianceRepo; policies: Pick<PolicyVersionsRepo, 'publishedBetween'>; now?: () => Date }) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());

  function checkAccess(auth: AuthContext) {
    if (auth.role === 'member') throw new ForbiddenError('Only workspace owners and admins read the compliance report');
  }

  /** `to` defaults to now, `from` to 30 days before `to`; at most REPORT_MAX_DAYS apart. */
  function rangeOf(input: { from?: Date; to?: Date }): ReportRange {
    const to = input.to ?? now();
    const from = input.from ?? new Date(to.getTime() - 30 * DAY_MS);
    if (from.getTime() >= to.getTime()) throw new ValidationError([{ field: 'from', message: 'must be before to' }]);
    if (to.getTime() - from.getTime() > REPORT_MAX_DAYS * DAY_MS) {
      throw new ValidationError([{ field: 'from', message: `the range may cover at most ${REPORT_MAX_DAYS} days` }]);
    }
    return { from, to };
  }

  async function* auditRows(workspaceId: string, range: ReportRange): AsyncGenerator<ReportAuditRow> {
    let cursor: ReportCursor | undefined;
    for (;;) {
      const page = await repo.auditPage(workspaceId, range.from, range.to, cursor, PAGE_SIZE);
      yield* page;
      if (page.length < PAGE_SIZE) return;
      cursor = page.at(-1)!.cursor;
    }
  }

  return {
    rangeOf,

    async reportJson(auth: AuthContext, range: ReportRange) {
      checkAccess(auth);
      const sections = Object.fromEntries(REPORT_SECTIONS.map((name) => [name, [] as ReportEntry[]])) as Record<ReportSection, ReportEntry[]>;
      let entries = 0;
      let truncated = false;
      for await (const row of auditRows(auth.workspaceId, range)) {
        if (entries === REPORT_JSON_MAX_ENTRIES) {
          truncated = true;
          break;
        }
        sections[sectionOf(row.action)].push(presentEntry(row));
        entries += 1;
      }
      return {
        workspaceId: auth.workspaceId,
        from: range.from,
        to: range.to,
        generatedAt: now(),
        truncated,
        counts: Object.fromEntries(REPORT_SECTIONS.map((name) => [name, sections[name].length])),
        mailboxScopes: await repo.mailboxScopes(auth.workspaceId),
        policyVersionsPublished: (await deps.policies.publishedBetween(range.from, range.to)).map((p) => ({ version: p.version, publishedAt: p.publishedAt, publishedBy: p.publishedBy })),
        sections,
      };
    },

    /** The same report as CSV lines, streamed page by page: one row per entry, `section` first. */
    async *reportCsv(auth: AuthContext, range: ReportRange): AsyncGenerator<string> {
      checkAccess(auth);
      yield csvLine(CSV_COLUMNS);
      for (const m of await repo.mailboxScopes(auth.workspaceId)) {
        yield csvLine(['mailboxScopes', m.connectedAt, 'mailbox.current_scopes', `user:${m.ownerUserId}`, 'mailbox', m.mailboxId, null, null, null, null, null, { email: m.email, scopes: m.scopes, policyVersion: m.policyVersion }]);
      }
      for (const p of await deps.policies.publishedBetween(range.from, range.to)) {
        yield csvLine(['policyVersionsPublished', p.publishedAt, 'policy.published', p.publishedBy, 'policy_version', p.version, null, null, null, null, null, null]);
      }
      for await (const row of auditRows(auth.workspaceId, range)) {
        const e = presentEntry(row);
        yield csvLine([sectionOf(row.action), e.at, e.action, e.actor, e.subjectType, e.subjectId, e.basis, e.purpose, e.caseReference, e.completedAt ?? null, e.requestId, e.detail]);
      }
    },
  };
}

export type ComplianceService = ReturnType<typeof createComplianceService>;
