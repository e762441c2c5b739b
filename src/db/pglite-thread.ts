/**
 * The embedded database (PGlite) on a thread of its own. PGlite runs each statement
 * synchronously on the thread that calls it; in-process, a stream of tracking writes took
 * that time from answering HTTP. Here a worker (`pglite-worker.ts`) owns the engine and the
 * main thread holds a client with the part of PGlite's interface Drizzle uses (`query`,
 * `exec`, `transaction`), so repos and migrations run unchanged.
 *
 * What the thread boundary changes, and how it is kept invisible:
 * - Type parsers are functions and cannot cross: the worker leaves the types a caller gives
 *   parsers for as text, and they are applied here, to the same text PGlite would pass them.
 *   Every other type is parsed by PGlite in the worker (dates, jsonb, int8, bytea, arrays)
 *   and crosses by structured clone, which keeps Date, BigInt and Uint8Array.
 * - A Postgres error crosses as its fields and is rebuilt as PGlite's `DatabaseError`, with
 *   `query`, `params` and `queryOptions` attached here as PGlite does (the parameters never
 *   leave this thread; the log serializer drops them as before).
 * - Transactions: `transaction()` opens one on the worker under an id; its statements carry
 *   the id, and PGlite's own transaction lock in the worker makes every other statement wait
 *   until COMMIT or ROLLBACK, in arrival order, as in-process.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { messages, type QueryOptions, type Results, type Transaction } from '@electric-sql/pglite';
import { DATABASE_ERROR_FIELDS, type Request, type Response, type Started, type WireError, type WorkerStart } from './pglite-protocol.js';

type Parsers = NonNullable<QueryOptions['parsers']>;
type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void; query?: string; params?: unknown[]; options?: QueryOptions };
/** A request without its id (the client numbers them). */
type Ask = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

/** The client Drizzle's PGlite driver is given: the subset of `PGlite` it calls. */
export interface PgliteClient {
  query<T>(query: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  exec(query: string, options?: QueryOptions): Promise<Results[]>;
  transaction<T>(callback: (tx: Transaction) => Promise<T>): Promise<T>;
}

/**
 * Starts the worker's module: the compiled JS next to this file, or (under tsx or vitest) the
 * TypeScript, through a bootstrap that registers tsx's loader in the new thread first (a
 * worker does not inherit the hooks `--import tsx` installed in this one).
 */
function startWorker(options: WorkerOptions): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./pglite-worker.js', import.meta.url), options);
  const source = new URL('./pglite-worker.ts', import.meta.url).href;
  // The ESM build of tsx's API (its package exports map `tsx/esm/api` to the CJS one for require).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

function toError(wire: WireError, pending?: Pending): Error {
  if (wire.kind === 'error') {
    const error = new Error(wire.message);
    error.name = wire.name;
    return error;
  }
  const error = new messages.DatabaseError(wire.message, wire.length, wire.name as messages.MessageName);
  for (const field of DATABASE_ERROR_FIELDS) error[field] = wire.fields[field];
  // As PGlite's own errors (its makePGliteError): the statement and its parameters, kept on this thread.
  return Object.assign(error, { query: pending?.query, params: pending?.params, queryOptions: pending?.options });
}

/** The caller's parsers, applied here to the columns the worker left as text. */
function applyParsers(result: Results, parsers: Parsers | undefined): Results {
  if (!parsers) return result;
  const columns: { index: number; name: string; parse: (text: string, typeId: number) => unknown; typeId: number }[] = [];
  result.fields.forEach((field, index) => {
    const parse = parsers[field.dataTypeID];
    if (parse) columns.push({ index, name: field.name, parse, typeId: field.dataTypeID });
  });
  if (columns.length === 0) return result;
  for (const row of result.rows as Record<string | number, unknown>[]) {
    for (const { index, name, parse, typeId } of columns) {
      const key = Array.isArray(row) ? index : name;
      const value = row[key];
      if (value !== null && value !== undefined) row[key] = parse(value as string, typeId);
    }
  }
  return result;
}

function checkOptions(options: QueryOptions | undefined) {
  if (options?.serializers || options?.blob || options?.onNotice) {
    throw new Error('PGlite on its own thread: serializers, blob and onNotice options cannot cross threads');
  }
}

export class PgliteThread implements PgliteClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextTransaction = 0;
  /** Set once the worker can take no more requests (closed, or it died): why. */
  private gone: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(worker: Worker) {
    this.worker = worker;
    worker.on('message', (response: Response) => this.settle(response));
    worker.on('error', (error) => this.fail(new Error(`PGlite worker failed: ${error.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`PGlite worker exited (code ${code})`)));
  }

  /** Starts the worker and opens the database in it (`dataDir` as PGlite takes it; `loadDataDir` a `dumpDataDir()` tarball). */
  static async start(options: { dataDir?: string; loadDataDir?: Blob }): Promise<PgliteThread> {
    const load = options.loadDataDir ? await options.loadDataDir.arrayBuffer() : undefined;
    const data: WorkerStart = { dataDir: options.dataDir, loadDataDir: load };
    const worker = startWorker({ workerData: data, transferList: load ? [load] : [] });
    const started = await new Promise<Started>((resolve, reject) => {
      const early = (code: number) => reject(new Error(`PGlite worker exited (code ${code}) before the database opened`));
      worker.once('error', reject).once('exit', early).once('message', (message: Started) => {
        worker.off('error', reject).off('exit', early);
        resolve(message);
      });
    });
    if (!started.started) {
      await worker.terminate();
      throw toError(started.error);
    }
    return new PgliteThread(worker);
  }

  query<T>(query: string, params: unknown[] = [], options?: QueryOptions): Promise<Results<T>> {
    return this.runQuery<T>(query, params, options);
  }

  exec(query: string, options?: QueryOptions): Promise<Results[]> {
    return this.runExec(query, options);
  }

  async transaction<T>(callback: (tx: Transaction) => Promise<T>): Promise<T> {
    const id = ++this.nextTransaction;
    await this.ask({ op: 'begin', tx: id });
    let closed = false;
    const open = () => {
      if (closed) throw new Error('Transaction is closed');
    };
    const tx = {
      query: async <R>(query: string, params: unknown[] = [], options?: QueryOptions) => (open(), this.runQuery<R>(query, params, options, id)),
      exec: async (query: string, options?: QueryOptions) => (open(), this.runExec(query, options, id)),
      sql: () => Promise.reject(new Error('PGlite on its own thread: tx.sql is not supported, use tx.query')),
      listen: () => Promise.reject(new Error('PGlite on its own thread: LISTEN is not supported')),
      rollback: async () => {
        open();
        closed = true;
        await this.ask({ op: 'rollback', tx: id });
      },
      get closed() {
        return closed;
      },
    } as unknown as Transaction;
    try {
      const result = await callback(tx);
      if (!closed) {
        closed = true;
        await this.ask({ op: 'commit', tx: id });
      }
      return result;
    } catch (error) {
      if (!closed) {
        closed = true;
        await this.ask({ op: 'rollback', tx: id });
      }
      throw error;
    }
  }

  /** The data dir as a tarball, as `PGlite.dumpDataDir` (tests snapshot a migrated database with it). */
  async dumpDataDir(compression?: 'none' | 'gzip' | 'auto'): Promise<Blob> {
    const bytes = (await this.ask({ op: 'dump', compression })) as ArrayBuffer;
    return new Blob([bytes]);
  }

  /** Closes the database and ends the thread; a second call waits for the first. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (!this.gone) await this.ask({ op: 'close' });
      } finally {
        this.gone ??= new Error('PGlite is closed');
        await this.worker.terminate();
      }
    })();
    return this.closing;
  }

  private async runQuery<T>(query: string, params: unknown[], options: QueryOptions | undefined, tx?: number): Promise<Results<T>> {
    checkOptions(options);
    const rawTypes = options?.parsers ? Object.keys(options.parsers).map(Number) : [];
    const context = { query, params, options };
    const result = (await this.ask({ op: 'query', sql: query, params, rowMode: options?.rowMode, paramTypes: options?.paramTypes, rawTypes, tx }, context)) as Results<T>;
    return applyParsers(result as Results, options?.parsers) as Results<T>;
  }

  private async runExec(query: string, options: QueryOptions | undefined, tx?: number): Promise<Results[]> {
    checkOptions(options);
    const rawTypes = options?.parsers ? Object.keys(options.parsers).map(Number) : [];
    const results = (await this.ask({ op: 'exec', sql: query, rawTypes, tx }, { query, options })) as Results[];
    return results.map((result) => applyParsers(result, options?.parsers));
  }

  private ask(request: Ask, context: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...context });
      try {
        this.worker.postMessage({ ...request, id } as Request);
      } catch (error) {
        // A parameter structured clone cannot copy (a function, a class with private state).
        this.pending.delete(id);
        reject(error as Error);
      }
    });
  }

  private settle(response: Response) {
    const pending = this.pending.get(response.id);
    if (!pending) return;
    this.pending.delete(response.id);
    if (response.ok) pending.resolve(response.value);
    else pending.reject(toError(response.error, pending));
  }

  /** The worker is gone: nothing pending will be answered. */
  private fail(error: Error) {
    this.gone ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
