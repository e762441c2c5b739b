/**
 * The thread that owns the embedded database (PGlite): it opens the engine and runs what the
 * main thread posts (`thread-protocol.ts`). PGlite executes a statement synchronously on the
 * thread that calls it; here that is this thread, so the main thread keeps answering HTTP
 * while SQL runs.
 *
 * Requests are handed to PGlite as they arrive: its own locks order them exactly as in-process
 * (one statement at a time; while a transaction is open, only that transaction's statements
 * run and everything else waits in arrival order). Except tasks, which reach it one at a time
 * (`oneTaskAtATime`), and `close`, which waits for the tasks posted before it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite, type QueryOptions, type Transaction } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import type { Db } from './connect.js';
import { runDatabaseThreadTask } from './database-thread-tasks.js';
import { pgliteExtensions } from './pglite-extensions.js';
import { createPreparedQueries, type PreparedQueries } from './pglite-prepared.js';
import * as schema from './schema.js';
import { replyTo, wireError, type Request, type Started, type WorkerStart } from './thread-protocol.js';

const port = parentPort!;
const start = workerData as WorkerStart;

/** Thrown inside a transaction's callback to make PGlite roll it back. */
const ROLLBACK = Symbol('rollback');

interface OpenTransaction {
  tx: Transaction;
  /** Ends the callback PGlite runs the transaction in: true commits, false rolls back. */
  finish: (commit: boolean) => void;
  /** PGlite's `transaction()`: settles after COMMIT or ROLLBACK. */
  done: Promise<unknown>;
}
const transactions = new Map<number, OpenTransaction>();

const keepText = (value: string) => value;
/** The caller parses these types itself: leave them as Postgres text (PGlite calls parsers with text). */
const parsersOf = (rawTypes: number[]) => (rawTypes.length === 0 ? undefined : Object.fromEntries(rawTypes.map((oid) => [oid, keepText])));

function openTransaction(db: PGlite, id: number): Promise<void> {
  let entered!: () => void;
  const ready = new Promise<void>((resolve) => (entered = resolve));
  let finish!: (commit: boolean) => void;
  const decided = new Promise<boolean>((resolve) => (finish = resolve));
  const done = db.transaction(async (tx) => {
    transactions.set(id, { tx, finish, done });
    entered();
    if (!(await decided)) throw ROLLBACK;
  });
  done.catch(() => undefined).finally(() => transactions.delete(id));
  // BEGIN failed: `done` rejects without the callback ever running.
  return Promise.race([ready, done.then(() => undefined)]);
}

function transactionOf(id: number): OpenTransaction {
  const open = transactions.get(id);
  if (!open) throw new Error('Transaction is closed');
  return open;
}

async function endTransaction(id: number, commit: boolean) {
  const open = transactionOf(id);
  transactions.delete(id);
  open.finish(commit);
  try {
    await open.done;
  } catch (error) {
    if (error !== ROLLBACK) throw error;
  }
}

/**
 * A Drizzle handle for tasks that run here (database-thread-tasks.ts): the engine itself,
 * through the same prepared statements as the main thread's queries, and the same locks
 * (PGlite's own: a task's transaction and the main thread's requests wait for each other as
 * in-process callers do).
 */
function localDrizzle(db: PGlite, prepared: PreparedQueries): Db {
  const inTransaction = (tx: Transaction) => ({
    query: (text: string, params: unknown[] = [], options?: QueryOptions) => prepared.query(text, params, options, true, () => tx.query(text, params, options)),
    exec: (text: string, options?: QueryOptions) => prepared.afterSchemaChange(() => tx.exec(text, options)),
    rollback: () => tx.rollback(),
    get closed() {
      return tx.closed;
    },
  });
  const client = {
    query: (text: string, params: unknown[] = [], options?: QueryOptions) => prepared.query(text, params, options, false, () => db.query(text, params, options)),
    exec: (text: string, options?: QueryOptions) => prepared.afterSchemaChange(() => db.exec(text, options)),
    transaction: <T>(callback: (tx: ReturnType<typeof inTransaction>) => Promise<T>) => db.transaction((tx) => callback(inTransaction(tx))),
  };
  return drizzle({ client: client as unknown as PGlite, schema }) as unknown as Db;
}

/**
 * Tasks (a tracking writer's batch, a rollup pass: tens of ms to over a hundred each) reach the engine one at a
 * time, the next only after a turn of this thread's event loop. A request that arrived meanwhile
 * (a click's send lookup) is then queued in PGlite ahead of the next task, so it waits for the
 * task that runs, not for every task already waiting (the writer and the rollup runner each have
 * one in flight, so that was two).
 */
let tasksDone: Promise<unknown> = Promise.resolve();
function oneTaskAtATime(work: () => Promise<unknown>): Promise<unknown> {
  const result = tasksDone.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(work);
  tasksDone = result.catch(() => undefined);
  return result;
}

async function run(db: PGlite, prepared: PreparedQueries, local: Db, request: Request): Promise<unknown> {
  switch (request.op) {
    case 'query': {
      const options = { rowMode: request.rowMode, parsers: parsersOf(request.rawTypes), paramTypes: request.paramTypes };
      if (request.tx === undefined) return prepared.query(request.sql, request.params, options, false, () => db.query(request.sql, request.params, options));
      const { tx } = transactionOf(request.tx);
      return prepared.query(request.sql, request.params, options, true, () => tx.query(request.sql, request.params, options));
    }
    case 'exec': {
      const options = { parsers: parsersOf(request.rawTypes) };
      // Any text (migrations, DDL): afterwards the prepared statements are parsed again.
      return prepared.afterSchemaChange(() => (request.tx === undefined ? db.exec(request.sql, options) : transactionOf(request.tx).tx.exec(request.sql, options)));
    }
    case 'begin':
      return openTransaction(db, request.tx);
    case 'commit':
      return endTransaction(request.tx, true);
    case 'rollback':
      return endTransaction(request.tx, false);
    case 'task':
      return oneTaskAtATime(() => runDatabaseThreadTask(local, request.name, request.args, { singleConnection: true }));
    case 'dump': {
      const blob = await db.dumpDataDir(request.compression);
      return blob.arrayBuffer();
    }
    case 'close':
      // Tasks posted before it still run (a task in the chain has not reached PGlite's lock yet).
      await tasksDone;
      await db.close();
      return undefined;
  }
}

try {
  const db = await PGlite.create({
    dataDir: start.dataDir,
    loadDataDir: start.loadDataDir ? new Blob([start.loadDataDir]) : undefined,
    extensions: pgliteExtensions({ statementStats: start.statementStats }),
  });
  const prepared = createPreparedQueries(db);
  const local = localDrizzle(db, prepared);
  port.on('message', (request: Request) => replyTo(port, request, run(db, prepared, local, request)));
  port.postMessage({ started: true } satisfies Started);
} catch (error) {
  port.postMessage({ started: false, error: wireError(error) } satisfies Started);
}
