import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import type { DatabaseThreadTaskArgs, DatabaseThreadTaskName, DatabaseThreadTaskResult } from './database-thread-tasks.js';
import { lockDataDir } from './dir-lock.js';
import { PgliteThread } from './pglite-thread.js';
import { TaskThread } from './task-thread.js';
import * as schema from './schema.js';
import { settlesWithin } from '../time.js';

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
  | {
      kind: 'pglite';
      dir?: string;
      loadDataDir?: Blob;
      /** Also load pg_stat_statements (benchmarks' profiling, `BENCH_PGSS=1`); never in the service. */
      statementStats?: boolean;
    }
  | {
      kind: 'postgres';
      url: string;
      poolSize?: number;
      /** Longest wait for a pooled connection, including opening one (default 2 s). */
      connectTimeoutMs?: number;
      /** Server-side statement_timeout; the client gives up 1 s later if the server never answers (default 10 s). */
      statementTimeoutMs?: number;
    };

export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;

/** The driver's "the server did not answer in time" errors: the connection is no longer trusted. */
const isReadTimeout = (error: unknown) => (error as Error | undefined)?.message === 'Query read timeout';

export interface Database {
  readonly db: Db;
  readonly kind: DatabaseTarget['kind'];
  migrate(): Promise<void>;
  /** Throws unless the database answers a trivial query. */
  ping(): Promise<void>;
  /**
   * Closes the database. With `timeoutMs` (a stop's deadline), resolves to false when it could
   * not close cleanly in time and was let go anyway: the embedded engine's thread ended
   * mid-statement (the next open recovers from the WAL, as after a crash; nothing committed is
   * lost, nothing uncommitted kept), a server's connections dropped (the server rolls back).
   */
  close(options?: { timeoutMs?: number }): Promise<boolean | void>;
  /** The embedded engine's data dir as a tarball (tests snapshot a migrated one); undefined on a server. */
  dumpDataDir?(compression?: 'none' | 'gzip' | 'auto'): Promise<Blob>;
  /**
   * Runs a task of database-thread-tasks.ts off the answering thread: on the embedded
   * database's own thread, or on a server's task thread.
   */
  runTask<K extends DatabaseThreadTaskName>(name: K, args: DatabaseThreadTaskArgs<K>): Promise<DatabaseThreadTaskResult<K>>;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url));

/** Both drivers run migrations under this lock so that two booting processes don't race. */
const MIGRATION_LOCK_ID = 7_316_205_901;

export async function connect(target: DatabaseTarget): Promise<Database> {
  if (target.kind === 'pglite') {
    const onDisk = Boolean(target.dir && !target.dir.startsWith('memory://'));
    if (onDisk) mkdirSync(target.dir!, { recursive: true });
    // One process per dir (dir-lock.ts): taken before the engine opens it, released once it is closed.
    const unlock = onDisk ? lockDataDir(target.dir!) : () => undefined;
    // The engine runs on a worker thread (pglite-thread.ts), so SQL never holds up answering.
    const client = await PgliteThread.start({ dataDir: target.dir, loadDataDir: target.loadDataDir, statementStats: target.statementStats }).catch((error: unknown) => {
      unlock();
      throw error;
    });
    const db = drizzlePglite({ client: client as unknown as PGlite, schema });
    return {
      db: db as unknown as Db,
      kind: 'pglite',
      migrate: () => migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER }),
      ping: async () => {
        await client.query('select 1');
      },
      dumpDataDir: (compression) => client.dumpDataDir(compression),
      runTask: (name, args) => client.runTask(name, args),
      // The open worker keeps the process alive; closing ends it (a second close is a no-op).
      close: (options) => client.close(options).finally(unlock),
    };
  }

  const statementTimeoutMs = target.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  // Without timeouts a hung or partitioned server holds every caller for as long as it hangs
  // (TCP alone may take many minutes to notice). The server cancels a statement after
  // statement_timeout; the client stops waiting 1 s later when even that cancel cannot come
  // back; a session left idle inside a transaction (its client gone) is ended by the server,
  // so it cannot keep holding locks.
  const pool = new pg.Pool({
    connectionString: target.url,
    max: target.poolSize ?? 10,
    connectionTimeoutMillis: target.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 1_000,
    idle_in_transaction_session_timeout: statementTimeoutMs * 2,
    keepAlive: true,
  });
  // An idle client that loses its server emits 'error'; without a listener that kills the process.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    // A client that errors after the pool has let go of it must not kill the process either.
    client.on('error', () => undefined);
    // After a read timeout the old statement may still be running on that connection, and
    // a transaction (drizzle releases its client without the error) would hand it back to
    // the pool: end it, so the pool drops it instead of queueing the next caller behind it.
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const result = query(...args);
      if (result instanceof Promise) {
        result.catch((error: unknown) => {
          if (isReadTimeout(error)) void client.end().catch(() => undefined);
        });
      }
      return result;
    };
  });
  const db = drizzlePg({ client: pool, schema });
  // Database tasks (database-thread-tasks.ts) run on a thread of their own with two
  // connections of their own (a write and a rollup pass at once), so their rows never load
  // the answering thread's heap.
  const tasks = new TaskThread({ url: target.url, poolSize: 2, connectTimeoutMs: target.connectTimeoutMs, statementTimeoutMs });
  return {
    db: db as unknown as Db,
    kind: 'postgres',
    migrate: async () => {
      // The lock lives on its own connection: holding a pooled one could starve a small pool.
      // Migrations run there too, without the pool's statement timeout (a backfill may be long).
      const lockClient = new pg.Client({ connectionString: target.url, connectionTimeoutMillis: target.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS });
      await lockClient.connect();
      try {
        await lockClient.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
        await migratePg(drizzlePg({ client: lockClient, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
      } finally {
        await lockClient.end().catch(() => undefined);
      }
    },
    ping: async () => {
      await db.execute(sql`select 1`);
    },
    runTask: (name, args) => tasks.runTask(name, args),
    close: async (options) => {
      const timeoutMs = options?.timeoutMs ?? Number.POSITIVE_INFINITY;
      // pool.end() waits for every client checked out (a transaction still running): past the
      // deadline the process exits, and its connections with it.
      const [tasksClosed, poolClosed] = await Promise.all([tasks.close({ timeoutMs }).catch(() => true), settlesWithin(pool.end(), timeoutMs)]);
      return tasksClosed && poolClosed;
    },
  };
}
