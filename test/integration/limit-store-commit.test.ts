import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Database } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createSqlLimitStore } from '../../src/gmail/limit-store.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * The pacer's grant commits without waiting for the disk (limit-store.ts `take`: synchronous_commit
 * off for its statement's own transaction; the claim's synchronous commit flushes it). That setting
 * must end with the grant: a connection that took a grant and then runs a claim, a sent record or
 * an opt-out must commit them durably. One connection here (a pool of one on the server; PGlite has
 * only one), so the next statement is sure to run where the grant ran.
 */

let database: Database & { url?: string };
let single: Database;

beforeAll(async () => {
  database = await createTestDatabase();
  single = database.url ? await connect({ kind: 'postgres', url: database.url, poolSize: 1 }) : database;
});
afterAll(async () => {
  if (single !== database) await single.close();
  await database.close();
});

const policy = { unitsPerMinute: 15_000, burstUnits: 1_000, sendsPerMinute: 60, budgetRecountMs: 60_000, budgetClaimGraceMs: 10_000 };
const setting = async () => rowsOf<{ synchronous_commit: string }>(await single.db.execute(sql`show synchronous_commit`))[0]!.synchronous_commit;

describe("the pacer grant's commit", () => {
  it('leaves synchronous_commit on for whatever the connection runs next, in or out of a transaction', async () => {
    expect(await setting()).toBe('on');
    const store = createSqlLimitStore(single.db);
    expect(await store.take(randomUUID(), 100, true, policy)).toEqual({ kind: 'unknown_mailbox' });
    expect(await setting()).toBe('on');
    const inTransaction = await single.db.transaction(async (tx) => {
      const [row] = rowsOf<{ synchronous_commit: string }>(await tx.execute(sql`show synchronous_commit`));
      return row!.synchronous_commit;
    });
    expect(inTransaction).toBe('on');
  });
});
