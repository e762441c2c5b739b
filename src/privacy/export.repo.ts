import { and, asc, eq, gt, inArray, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { Db } from '../db/connect.js';
import { pgArray } from '../db/pg-array.js';
import { recordAudit, type AuditEntry } from './audit.js';
import { auditLog, campaigns, consents, mailboxes, memberships, messages, suppressions, users, workspaces } from '../db/schema.js';
import { pagesOf } from './json-stream.js';

/*
 * What the caller's own export (P-12) reads: everything held about one user, in the
 * workspaces they are a member of, page by page in id order (keyset: `id > last id`).
 * Columns are listed one by one so that a secret (password hash, OAuth tokens) can never
 * slip in with a `select *`.
 */

export const EXPORT_PAGE_SIZE = 500;

/** A table read by the exports: every one has a random `id`, the keyset they page on. */
type KeyedTable = PgTable & { id: AnyPgColumn };
type ExportRow = { id: string } & Record<string, unknown>;

/** The chosen columns of every row of `table` matching `where`, a page at a time in id order (`id > last id`). */
export function keysetRows(db: Db, table: KeyedTable, columns: Record<string, AnyPgColumn | SQL.Aliased>, where: SQL | undefined): AsyncIterable<ExportRow> {
  return pagesOf<ExportRow>(EXPORT_PAGE_SIZE, async (after) => {
    const rows = await db
      .select(columns)
      .from(table as PgTable)
      .where(after ? and(where, gt(table.id, after.id)) : where)
      .orderBy(asc(table.id))
      .limit(EXPORT_PAGE_SIZE);
    return rows as ExportRow[];
  });
}

/** Metadata of a message, as every export shows it: never a body (none is stored). */
export const messageMetadata = {
  id: messages.id,
  workspaceId: messages.workspaceId,
  mailboxId: messages.mailboxId,
  direction: messages.direction,
  status: messages.status,
  rfc822MessageId: messages.rfc822MessageId,
  gmailThreadId: messages.gmailThreadId,
  inReplyTo: messages.inReplyTo,
  subject: messages.subject,
  fromAddress: messages.fromAddress,
  toAddresses: messages.toAddresses,
  ccAddresses: messages.ccAddresses,
  at: messages.at,
};

export function createSelfExportRepo(db: Db) {
  const workspacesOf = (userId: string) => db.select({ id: memberships.workspaceId }).from(memberships).where(eq(memberships.userId, userId));

  return {
    /** The profile, without the password hash. */
    async profile(userId: string) {
      const [row] = await db.select({ id: users.id, email: users.email, name: users.name, createdAt: users.createdAt }).from(users).where(eq(users.id, userId));
      return row;
    },

    async memberships(userId: string) {
      return db
        .select({ workspaceId: memberships.workspaceId, workspaceName: workspaces.name, role: memberships.role, since: memberships.createdAt })
        .from(memberships)
        .innerJoin(workspaces, eq(workspaces.id, memberships.workspaceId))
        .where(eq(memberships.userId, userId))
        .orderBy(asc(memberships.createdAt));
    },

    /** Mailboxes they connected: metadata, scopes and the disclosure version they accepted; never a token. */
    mailboxes(userId: string) {
      return keysetRows(db, mailboxes, {
        id: mailboxes.id,
        workspaceId: mailboxes.workspaceId,
        email: mailboxes.email,
        kind: mailboxes.kind,
        status: mailboxes.status,
        scopes: mailboxes.scopes,
        disclosureVersion: mailboxes.disclosureVersion,
        dailyBudget: mailboxes.dailyBudget,
        syncEnabled: mailboxes.syncEnabled,
        lastSyncAt: mailboxes.lastSyncAt,
        connectedAt: mailboxes.connectedAt,
        createdAt: mailboxes.createdAt,
      }, and(eq(mailboxes.userId, userId), inArray(mailboxes.workspaceId, workspacesOf(userId))));
    },

    /** Metadata of mail they sent (1:1 and campaign mail): bodies are never stored. */
    messagesSent(userId: string) {
      return keysetRows(db, messages, messageMetadata, and(eq(messages.sentBy, userId), inArray(messages.workspaceId, workspacesOf(userId))));
    },

    campaignsCreated(userId: string) {
      return keysetRows(db, campaigns, {
        id: campaigns.id,
        workspaceId: campaigns.workspaceId,
        name: campaigns.name,
        kind: campaigns.kind,
        status: campaigns.status,
        subject: campaigns.subject,
        html: campaigns.html,
        text: campaigns.text,
        topic: campaigns.topic,
        steps: campaigns.steps,
        createdAt: campaigns.createdAt,
        launchedAt: campaigns.launchedAt,
        completedAt: campaigns.completedAt,
      }, and(eq(campaigns.createdBy, userId), inArray(campaigns.workspaceId, workspacesOf(userId))));
    },

    /**
     * Consent records they made by hand (`user:<id>`), then by an import they ran
     * (`import:user:<id>`, contacts.service.ts): one keyset each, so each pages along the actor
     * index (an `or` of the two would sort all of a large importer's records for every page).
     */
    async *consentsRecorded(userId: string) {
      for (const actor of [`user:${userId}`, `import:user:${userId}`]) {
        yield* keysetRows(db, consents, {
          id: consents.id,
          workspaceId: consents.workspaceId,
          contactId: consents.contactId,
          status: consents.status,
          source: consents.source,
          policyVersion: consents.policyVersion,
          at: consents.at,
        }, and(eq(consents.actor, actor), inArray(consents.workspaceId, workspacesOf(userId))));
      }
    },

    suppressionsRecorded(userId: string) {
      return keysetRows(db, suppressions, {
        id: suppressions.id,
        workspaceId: suppressions.workspaceId,
        email: suppressions.email,
        scope: suppressions.scope,
        reason: suppressions.reason,
        source: suppressions.source,
        createdAt: suppressions.createdAt,
      }, and(eq(suppressions.createdBy, userId), inArray(suppressions.workspaceId, workspacesOf(userId))));
    },

    /** What the audit log says they did. */
    auditRows(userId: string) {
      return keysetRows(db, auditLog, {
        id: auditLog.id,
        workspaceId: auditLog.workspaceId,
        action: auditLog.action,
        subjectType: auditLog.subjectType,
        subjectId: auditLog.subjectId,
        detail: auditLog.detail,
        requestId: auditLog.requestId,
        at: auditLog.at,
      }, and(eq(auditLog.actor, `user:${userId}`), inArray(auditLog.workspaceId, workspacesOf(userId))));
    },

    /** The export's own evidence (`privacy.exported`). */
    recordAudit: (entry: AuditEntry) => recordAudit(db, entry),
  };
}

export type SelfExportRepo = ReturnType<typeof createSelfExportRepo>;

/** `lower(column) = any(addresses)`, the list bound as one parameter; pass addresses lowercased. */
export const addressIn = (column: AnyPgColumn, addresses: readonly string[]): SQL =>
  addresses.length === 0 ? sql`false` : sql`lower(${column}) = any(${pgArray(addresses)}::text[])`;
