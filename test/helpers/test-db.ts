import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { inject } from 'vitest';
import { connect, type Database, type Db } from '../../src/db/connect.js';
import { withDatabase } from './global-setup.js';

/**
 * A private, migrated database for one test file: PGlite loaded from the run's
 * template dump, or (TEST_DATABASE_URL set) a fresh clone of the server template.
 * `close()` also drops the server copy.
 */
export async function createTestDatabase(): Promise<Database & { url?: string }> {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) {
    const dump = new Blob([readFileSync(inject('pgliteTemplateDump'))]);
    return connect({ kind: 'pglite', dir: 'memory://', loadDataDir: dump });
  }
  const name = `inboxtrail_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name} template ${inject('serverTemplateDatabase')}`);
  await admin.end();
  const url = withDatabase(serverUrl, name);
  const database = await connect({ kind: 'postgres', url, poolSize: 5 });
  return {
    ...database,
    /** For a child process that must use the same database (crash tests). */
    url,
    close: async () => {
      await database.close();
      const dropper = new pg.Client({ connectionString: serverUrl });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

/** Row count of a table (cast: count(*) is a number on PGlite and a string on pg). */
export async function countRows(db: Db, table: string): Promise<number> {
  const result = (await db.execute(sql.raw(`select count(*)::int as n from ${table}`))) as unknown as { rows: { n: number }[] };
  return Number(result.rows[0]!.n);
}

/** Row counts of every table of ours: "nothing changed" compares two of these. */
export async function snapshotCounts(db: Db): Promise<Record<string, number>> {
  const result = (await db.execute(
    sql`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`,
  )) as unknown as { rows: { name: string }[] };
  const tables = result.rows.map((r) => r.name);
  const counts: Record<string, number> = {};
  for (const table of tables) counts[table] = await countRows(db, table);
  return counts;
}
