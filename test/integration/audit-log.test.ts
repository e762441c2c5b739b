import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { recordAudit } from '../../src/privacy/audit.js';
import { createAuditRetention } from '../../src/privacy/audit-retention.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * The audit log is append-only in the database itself (raw SQL, PGlite and the server with
 * TEST_DATABASE_URL): no UPDATE, no DELETE, no TRUNCATE — except the retention purge, which
 * may delete only rows older than the retention period.
 */

const DAY_MS = 24 * 3600 * 1000;
let database: Database;
const workspaceId = randomUUID();
const run = (statement: ReturnType<typeof sql>) => database.db.execute(statement);
const count = async () => Number(((await run(sql`select count(*)::int as n from audit_log where workspace_id = ${workspaceId}::uuid`)) as unknown as { rows: { n: number }[] }).rows[0]!.n);

async function insertAt(daysAgo: number, action = 'test.event') {
  const at = new Date(Date.now() - daysAgo * DAY_MS);
  await run(sql`insert into audit_log (workspace_id, actor, action, subject_type, at) values (${workspaceId}::uuid, 'system:test', ${action}, 'test', ${at.toISOString()}::timestamptz)`);
}

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe('append-only audit log', () => {
  it('an audit row can be neither updated, deleted nor truncated by raw SQL', async () => {
    await recordAudit(database.db, { workspaceId, actor: 'user:x', action: 'grant.created', subjectType: 'gmail_access_grant', detail: { a: 1 } });
    const before = await count();
    await expect(run(sql`update audit_log set action = 'nothing' where workspace_id = ${workspaceId}::uuid`)).rejects.toThrow();
    await expect(run(sql`update audit_log set detail = '{}'::jsonb`)).rejects.toThrow();
    await expect(run(sql`delete from audit_log where workspace_id = ${workspaceId}::uuid`)).rejects.toThrow();
    await expect(run(sql`delete from audit_log`)).rejects.toThrow();
    await expect(run(sql`truncate audit_log`)).rejects.toThrow();
    expect(await count()).toBe(before);
    const [row] = ((await run(sql`select action, detail from audit_log where workspace_id = ${workspaceId}::uuid and actor = 'user:x'`)) as unknown as { rows: { action: string; detail: unknown }[] }).rows;
    expect(row).toEqual({ action: 'grant.created', detail: { a: 1 } });
  });

  it('the purge setting allows deleting only rows older than it, only inside its own transaction', async () => {
    await insertAt(10);
    const cutoff = new Date(Date.now() - 365 * DAY_MS).toISOString();
    const before = await count();
    // A row younger than the cutoff stays, even with the setting.
    await expect(
      database.db.transaction(async (tx) => {
        await tx.execute(sql`select set_config('inboxtrail.audit_purge_before', ${cutoff}, true)`);
        await tx.execute(sql`delete from audit_log where workspace_id = ${workspaceId}::uuid`);
      }),
    ).rejects.toThrow();
    // The setting is transaction-local: a later statement outside it is refused again.
    await database.db.transaction(async (tx) => {
      await tx.execute(sql`select set_config('inboxtrail.audit_purge_before', ${cutoff}, true)`);
    });
    await expect(run(sql`delete from audit_log where workspace_id = ${workspaceId}::uuid`)).rejects.toThrow();
    expect(await count()).toBe(before);
  });

  it('P-15 the retention purge deletes rows past AUDIT_RETENTION_DAYS and keeps the rest', async () => {
    await insertAt(2556, 'old.one');
    await insertAt(4000, 'old.two');
    await insertAt(2000, 'young.one');
    const before = await count();
    const retention = createAuditRetention({ db: database.db, retentionDays: 2555 });
    expect(await retention.purgeExpired()).toBe(2);
    expect(await count()).toBe(before - 2);
    const actions = ((await run(sql`select action from audit_log where workspace_id = ${workspaceId}::uuid`)) as unknown as { rows: { action: string }[] }).rows.map((r) => r.action);
    expect(actions).toContain('young.one');
    expect(actions).not.toContain('old.one');
    // Moving the clock ahead makes the young row due too.
    const later = createAuditRetention({ db: database.db, retentionDays: 2555, now: () => new Date(Date.now() + 600 * DAY_MS) });
    expect(await later.purgeExpired()).toBeGreaterThanOrEqual(1);
    expect(((await run(sql`select action from audit_log where action = 'young.one'`)) as unknown as { rows: unknown[] }).rows).toEqual([]);
  });
});
