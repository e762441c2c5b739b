import { and, asc, eq, gt, isNull, ne, or, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import { mailboxes } from '../db/schema.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';

/** A mailbox's sealed tokens, as key rotation reads and rewrites them. */
export interface SealedTokens {
  id: string;
  workspaceId: string;
  refreshTokenEnc: string;
  accessTokenEnc: string | null;
}

const columns = { id: mailboxes.id, workspaceId: mailboxes.workspaceId, refreshTokenEnc: mailboxes.refreshTokenEnc, accessTokenEnc: mailboxes.accessTokenEnc };

/** Key rotation's queries: across every workspace, since rotating the service's keys is not a tenant's action. */
export function createKeyRotationRepo(db: Db) {
  return {
    /** Mailboxes after `afterId`, in id order: a pass reads the table a page at a time, holding no lock. */
    async page(afterId: string | undefined, limit: number): Promise<SealedTokens[]> {
      return db
        .select(columns)
        .from(mailboxes)
        // A deleted mailbox's tokens are wiped once revoked at Google; one whose revocation waits
        // for Google to answer (mailboxes.service.ts retryRevocations) keeps its refresh token until then.
        .where(and(or(isNull(mailboxes.deletedAt), ne(mailboxes.refreshTokenEnc, '')), afterId ? gt(mailboxes.id, afterId) : undefined))
        .orderBy(asc(mailboxes.id))
        .limit(limit);
    },

    async find(id: string): Promise<SealedTokens | undefined> {
      const [row] = await db.select(columns).from(mailboxes).where(eq(mailboxes.id, id));
      return row;
    },

    /**
     * Writes the re-encrypted tokens only if the row still holds exactly what was read: a
     * reconnect or a token refresh that wrote in between wins, and this returns false.
     */
    async replaceIfUnchanged(read: SealedTokens, next: { refreshTokenEnc: string; accessTokenEnc: string | null }): Promise<boolean> {
      const updated = await db
        .update(mailboxes)
        .set(next)
        .where(
          and(
            eq(mailboxes.id, read.id),
            eq(mailboxes.refreshTokenEnc, read.refreshTokenEnc),
            sql`${mailboxes.accessTokenEnc} is not distinct from ${read.accessTokenEnc}`,
          ),
        )
        .returning({ id: mailboxes.id });
      return updated.length > 0;
    },

    /** How many stored tokens (refresh and access together) each key version sealed. */
    async countByKeyVersion(): Promise<Map<string, number>> {
      const rows = rowsOf<{ version: string; tokens: number | string }>(
        await db.execute(sql`
          select split_part(token, '.', 1) as version, count(*)::int as tokens
          from (select ${mailboxes.refreshTokenEnc} as token from ${mailboxes}
                union all
                select ${mailboxes.accessTokenEnc} from ${mailboxes} where ${mailboxes.accessTokenEnc} is not null) t
          group by 1`),
      );
      return new Map(rows.map((r) => [r.version, Number(r.tokens)]));
    },

    recordAudit: (entry: AuditEntry) => recordAudit(db, entry),
  };
}

export type KeyRotationRepo = ReturnType<typeof createKeyRotationRepo>;
