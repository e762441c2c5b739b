import type { Logger } from '../logger.js';
import type { KeyRotationRepo, SealedTokens } from './key-rotation.repo.js';
import { tokenContext, TokenDecryptError, type TokenCipher } from './token-cipher.js';

/*
 * Key rotation (invariant 6, P-06): re-encrypts every OAuth token not sealed under the
 * newest TOKEN_ENCRYPTION_KEYS version, row by row, while the service runs.
 *
 *   read a page ─▶ for each stale row: decrypt (old key) ─▶ encrypt (newest key)
 *        ─▶ UPDATE … WHERE the row still holds what was read
 *              ├─ 1 row  → rewritten
 *              └─ 0 rows → someone wrote in between (reconnect, token refresh): re-read and
 *                          try again; their write is never overwritten
 *
 * A row that does not decrypt (tampered, or its key is no longer configured) is reported by
 * mailbox id and reason and the pass goes on. The old key can be removed once no stored
 * token names it: the report says which configured versions that is true of.
 */

const PAGE_SIZE = 200;
/** A row someone keeps rewriting is left for the next pass after this many tries. */
const MAX_TRIES = 3;

export interface RotationFailure {
  mailboxId: string;
  workspaceId: string;
  reason: string;
}

export interface RotationReport {
  currentVersion: string;
  scanned: number;
  rewritten: number;
  alreadyCurrent: number;
  /** Rows whose concurrent writer kept winning (MAX_TRIES times): left for the next pass. */
  leftForNextPass: number;
  /** Times a concurrent write was detected and the row re-read (their value was kept). */
  concurrentWrites: number;
  failed: RotationFailure[];
  /** Tokens per key version after the pass. */
  tokensByVersion: Record<string, number>;
  /** Configured older versions that no stored token names any more: safe to remove from TOKEN_ENCRYPTION_KEYS. */
  removableVersions: string[];
}

type Outcome = 'rewritten' | 'current' | 'contended' | { failed: string };

export function createKeyRotation(deps: { repo: KeyRotationRepo; cipher: TokenCipher; configuredVersions: readonly string[]; logger?: Logger }) {
  const { repo, cipher } = deps;

  const stale = (row: SealedTokens) => !cipher.isCurrent(row.refreshTokenEnc) || (row.accessTokenEnc !== null && !cipher.isCurrent(row.accessTokenEnc));
  const reseal = (row: SealedTokens, value: string, which: 'refresh' | 'access') =>
    cipher.isCurrent(value) ? value : cipher.encrypt(cipher.decrypt(value, tokenContext(row.id, which)), tokenContext(row.id, which));

  /** One row, re-read after each lost race, until it is current, rewritten, or MAX_TRIES. */
  async function rotateRow(first: SealedTokens, counts: { concurrentWrites: number }): Promise<Outcome> {
    let row: SealedTokens | undefined = first;
    for (let attempt = 0; attempt < MAX_TRIES; attempt += 1) {
      if (!row) return 'current'; // Disconnected meanwhile: nothing left to rotate.
      if (!stale(row)) return attempt === 0 ? 'current' : 'rewritten';
      let next;
      try {
        next = { refreshTokenEnc: reseal(row, row.refreshTokenEnc, 'refresh'), accessTokenEnc: row.accessTokenEnc && reseal(row, row.accessTokenEnc, 'access') };
      } catch (error) {
        if (error instanceof TokenDecryptError) return { failed: error.reason };
        throw error;
      }
      if (await repo.replaceIfUnchanged(row, next)) return 'rewritten';
      counts.concurrentWrites += 1;
      row = await repo.find(row.id);
    }
    return 'contended';
  }

  return {
    async rotate(options: { actor?: string } = {}): Promise<RotationReport> {
      const actor = options.actor ?? 'system:rotate-keys';
      const report: RotationReport = {
        currentVersion: cipher.currentVersion,
        scanned: 0,
        rewritten: 0,
        alreadyCurrent: 0,
        leftForNextPass: 0,
        concurrentWrites: 0,
        failed: [],
        tokensByVersion: {},
        removableVersions: [],
      };
      const perWorkspace = new Map<string, { rewritten: number; failedMailboxIds: string[] }>();
      const tally = (workspaceId: string) => perWorkspace.get(workspaceId) ?? perWorkspace.set(workspaceId, { rewritten: 0, failedMailboxIds: [] }).get(workspaceId)!;

      let after: string | undefined;
      for (;;) {
        const page = await repo.page(after, PAGE_SIZE);
        for (const row of page) {
          report.scanned += 1;
          const outcome = await rotateRow(row, report);
          if (outcome === 'rewritten') {
            report.rewritten += 1;
            tally(row.workspaceId).rewritten += 1;
          } else if (outcome === 'current') report.alreadyCurrent += 1;
          else if (outcome === 'contended') report.leftForNextPass += 1;
          else {
            // Why, by mailbox id: never the ciphertext or any part of it.
            report.failed.push({ mailboxId: row.id, workspaceId: row.workspaceId, reason: outcome.failed });
            tally(row.workspaceId).failedMailboxIds.push(row.id);
            deps.logger?.warn({ mailboxId: row.id, reason: outcome.failed }, 'a stored token could not be re-encrypted; the pass goes on');
          }
        }
        if (page.length < PAGE_SIZE) break;
        after = page[page.length - 1]!.id;
      }

      report.tokensByVersion = Object.fromEntries(await repo.countByKeyVersion());
      report.removableVersions = deps.configuredVersions.filter((v) => v !== cipher.currentVersion && !report.tokensByVersion[v]);
      // Evidence per workspace whose tokens this pass touched (the compliance report is per workspace).
      for (const [workspaceId, counts] of perWorkspace) {
        await repo.recordAudit({
          workspaceId,
          actor,
          action: 'keys.rotated',
          subjectType: 'token_keys',
          subjectId: cipher.currentVersion,
          detail: { toVersion: cipher.currentVersion, rewritten: counts.rewritten, failedMailboxIds: counts.failedMailboxIds },
        });
      }
      return report;
    },
  };
}

export type KeyRotation = ReturnType<typeof createKeyRotation>;

/** The report in words, for `npm run rotate-keys` and the logs: counts, failures, and whether the old keys can go. */
export function describeRotation(report: RotationReport, configuredVersions: readonly string[]): string[] {
  const lines = [
    `current key: ${report.currentVersion}`,
    `mailboxes scanned: ${report.scanned}; re-encrypted: ${report.rewritten}; already current: ${report.alreadyCurrent}; concurrent writes kept: ${report.concurrentWrites}; left for next pass: ${report.leftForNextPass}; failed: ${report.failed.length}`,
  ];
  for (const failure of report.failed) lines.push(`  failed: mailbox ${failure.mailboxId} (workspace ${failure.workspaceId}): ${failure.reason}`);
  const unknown = Object.keys(report.tokensByVersion).filter((v) => !configuredVersions.includes(v));
  for (const version of configuredVersions) {
    if (version === report.currentVersion) continue;
    const left = report.tokensByVersion[version] ?? 0;
    lines.push(left === 0 ? `key ${version}: no stored token uses it any more; it can be removed from TOKEN_ENCRYPTION_KEYS` : `key ${version}: still used by ${left} stored token(s); keep it until they are re-encrypted or reconnected`);
  }
  for (const version of unknown) lines.push(`key ${version}: ${report.tokensByVersion[version]} stored token(s) name a key that is not configured; those mailboxes must reconnect`);
  return lines;
}
