import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedPlanData, type PlanData } from '../../scripts/bench/plans-data.js';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createPurgeRepo } from '../../src/privacy/purge.repo.js';
import { createSuppressionListRepo } from '../../src/suppression/suppression.repo.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * Deleting a contact or a recipient row runs the foreign keys' own lookups once per deleted row
 * (`campaign_sends.contact_id` set null, `consents` and `message_contacts` cascade, the
 * reference check of `campaign_sends.recipient_id`). Without an index led by that column each
 * lookup read its whole table: purging a closed workspace of 330 contacts beside one of 100,000
 * read 64.7M ledger, 39.7M consent and 32.4M timeline tuples on PostgreSQL 15 (13.2 s), and
 * purging one contact ~1.1M tuples (BENCHMARKS.md, "Query plans at 100k: the audit"; migration
 * 0027). Counted here as the tables' sequential scans in the purge's transaction
 * (`pg_stat_xact_user_tables`), which includes the work inside the triggers that EXPLAIN's
 * buffers leave out, on the test database (PGlite, or the server with TEST_DATABASE_URL), with
 * 2,000 contacts in the large workspace and 110 in the closed one. At 100,000:
 * `npm run bench -- plans`.
 */
let database: Database;
let data: PlanData;
beforeAll(async () => {
  database = await createTestDatabase();
  data = await seedPlanData(database.db, 2_000, 100);
}, 120_000);
afterAll(() => database?.close());

const hash = (email: string) => createHash('sha256').update(email).digest('hex');

class Rollback extends Error {}

/** Sequential scans per table while `work` runs, in a transaction rolled back afterwards. */
async function seqScansDuring(work: (db: Db) => Promise<unknown>): Promise<Record<string, number>> {
  const stats = async (db: Db) =>
    new Map(rowsOf<{ table: string; n: number }>(await db.execute(sql`select relname as table, seq_scan::int as n from pg_stat_xact_user_tables`)).map((r) => [r.table, Number(r.n)]));
  let scans: Record<string, number> = {};
  await database.db
    .transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      const before = await stats(tx);
      await work(tx);
      const after = await stats(tx);
      scans = Object.fromEntries([...after].map(([table, n]) => [table, n - (before.get(table) ?? 0)]));
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  return scans;
}

describe('purges look rows up by index, not by a scan per deleted row', () => {
  it('a closed workspace: its contacts’ and recipients’ foreign-key lookups probe the ledger, consents and timeline links', async () => {
    const scans = await seqScansDuring(async (tx) => {
      const result = await createPurgeRepo(tx).purgeWorkspace(data.small.workspaceId);
      expect(result?.removed.workspaces).toBe(1);
    });
    // Before migration 0027: a scan of each per contact (110) or recipient (98) deleted. What
    // may remain is per workspace, not per row: the purge's lock of the workspace's sends and
    // the workspace's own cascades (by workspace_id) to its sends and its consents.
    expect(scans.campaign_sends ?? 0, JSON.stringify(scans)).toBeLessThanOrEqual(2);
    expect(scans.message_contacts ?? 0, JSON.stringify(scans)).toBe(0);
    expect(scans.consents ?? 0, JSON.stringify(scans)).toBeLessThanOrEqual(1);
  });

  it('one contact: its sends, timeline links, consents, recipient rollups and the messages naming its address by index', async () => {
    const scans = await seqScansDuring(async (tx) => {
      const result = await createPurgeRepo(tx).purgeContact(data.deletedContactId, hash);
      expect(result?.removed.contacts).toBe(1);
      expect(result?.removed.sends).toBe(2);
      expect(result?.removed.trackingRecipientRollups).toBe(2);
    });
    // messages: before migration 0047 the messages naming the address were a scan of the
    // workspace's messages (~0.4 s a contact at 204k, under the address lock). webhook_events:
    // before migration 0050, a scan of the workspace's outbox (36 ms at 100k).
    for (const table of ['campaign_sends', 'message_contacts', 'consents', 'tracking_recipient_rollups', 'messages', 'webhook_events']) {
      expect(scans[table] ?? 0, `${table}: ${JSON.stringify(scans)}`).toBe(0);
    }
  });
});

describe('the suppression list', () => {
  it('a first page reads its rows through the list’s index, not the workspace’s whole list sorted', async () => {
    const scans = await seqScansDuring(async (tx) => {
      const page = await createSuppressionListRepo(tx, hash).listEntries(data.big.workspaceId, { limit: 50 });
      expect(page).toHaveLength(50);
    });
    expect(scans.suppressions ?? 0, JSON.stringify(scans)).toBe(0);
  });
});
