import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import * as schema from './schema.js';

/** The Drizzle handle every repo takes; a transaction has the same shape. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

/**
 * Gives a repo a way to run several of its calls in one transaction: `work` receives
 * a copy of the repo bound to the transaction.
 */
export function inTransaction<Repo>(db: Db, makeRepo: (db: Db) => Repo) {
  return <T>(work: (repo: Repo) => Promise<T>): Promise<T> => db.transaction((tx) => work(makeRepo(tx as unknown as Db)));
}

export type DatabaseTarget =
  | { kind: 'pglite'; dir?: string; loadDataDir?: Blob }
  | { kind: 'postgres'; url: string; poolSize?: number };

export interface Database {
  readonly db: Db;
  readonly kind: DatabaseTarget['kind'];
  migrate(): Promise<void>;
  /** Throws unless the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
  /** The embedded engine, for tests that snapshot it; undefined on a server. */
  readonly pglite?: PGlite;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url));

/** Both drivers run migrations under this lock so that two booting processes don't race. */
const MIGRATION_LOCK_ID = 7_316_205_901;

export async function connect(target: DatabaseTarget): Promise<Database> {
  if (target.kind === 'pglite') {
    if (target.dir && !target.dir.startsWith('memory://')) mkdirSync(target.dir, { recursive: true });
    const client = await PGlite.create({ dataDir: target.dir, loadDataDir: target.loadDataDir });
    const db = drizzlePglite({ client, schema });
    let closed = false;
    return {
      db: db as unknown as Db,
      kind: 'pglite',
      pglite: client,
      migrate: () => migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER }),
      ping: async () => {
        await client.query('select 1');
      },
      close: async () => {
        // An open PGlite keeps the process alive forever; closing twice throws.
        if (closed) return;
        closed = true;
        await client.close();
      },
    };
  }

  const pool = new pg.Pool({ connectionString: target.url, max: target.poolSize ?? 10 });
  // An idle client that loses its server emits 'error'; without a listener that kills the process.
  pool.on('error', () => undefined);
  const db = drizzlePg({ client: pool, schema });
  return {
    db: db as unknown as Db,
    kind: 'postgres',
    migrate: async () => {
      // The lock lives on its own connection: holding a pooled one could starve a small pool.
      const lockClient = new pg.Client({ connectionString: target.url });
      await lockClient.connect();
      try {
        await lockClient.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
        await migratePg(db, { migrationsFolder: MIGRATIONS_FOLDER });
      } finally {
        await lockClient.end().catch(() => undefined);
      }
    },
    ping: async () => {
      await db.execute(sql`select 1`);
    },
    close: async () => {
      await pool.end().catch(() => undefined);
    },
  };
}
