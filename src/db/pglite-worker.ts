/**
 * The thread that owns the embedded database (PGlite): it opens the engine and runs what the
 * main thread posts (`pglite-protocol.ts`). PGlite executes a statement synchronously on the
 * thread that calls it; here that is this thread, so the main thread keeps answering HTTP
 * while SQL runs.
 *
 * Requests are handed to PGlite as they arrive: its own locks order them exactly as in-process
 * (one statement at a time; while a transaction is open, only that transaction's statements
 * run and everything else waits in arrival order).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { createPreparedQueries, type PreparedQueries } from './pglite-prepared.js';
import { DATABASE_ERROR_FIELDS, type Request, type Response, type Started, type WireError, type WorkerStart } from './pglite-protocol.js';

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

function wireError(error: unknown): WireError {
  const e = error as Record<string, unknown> | null;
  if (e && typeof e === 'object' && typeof e.code === 'string' && typeof e.length === 'number') {
    const fields: Record<string, string | undefined> = {};
    for (const field of DATABASE_ERROR_FIELDS) if (typeof e[field] === 'string') fields[field] = e[field] as string;
    return { kind: 'database', message: String(e.message), length: e.length, name: String(e.name), fields };
  }
  return { kind: 'error', name: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error) };
}

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

async function run(db: PGlite, prepared: PreparedQueries, request: Request): Promise<unknown> {
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
    case 'dump': {
      const blob = await db.dumpDataDir(request.compression);
      return blob.arrayBuffer();
    }
    case 'close':
      await db.close();
      return undefined;
  }
}

function reply(request: Request, outcome: Promise<unknown>) {
  outcome.then(
    (value) => {
      const response: Response = { id: request.id, ok: true, value };
      // A dump is moved, not copied (it is the whole data dir).
      port.postMessage(response, value instanceof ArrayBuffer ? [value] : []);
    },
    (error: unknown) => port.postMessage({ id: request.id, ok: false, error: wireError(error) } satisfies Response),
  );
}

try {
  const db = await PGlite.create({ dataDir: start.dataDir, loadDataDir: start.loadDataDir ? new Blob([start.loadDataDir]) : undefined });
  const prepared = createPreparedQueries(db);
  port.on('message', (request: Request) => reply(request, run(db, prepared, request)));
  port.postMessage({ started: true } satisfies Started);
} catch (error) {
  port.postMessage({ started: false, error: wireError(error) } satisfies Started);
}
