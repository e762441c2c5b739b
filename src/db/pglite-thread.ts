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
 *   until COMMIT or ROLLBACK, in arrival order, as in-process (tasks excepted: they reach the
 *   engine one at a time, pglite-worker.ts).
 */
import type { QueryOptions, Results, Transaction } from '@electric-sql/pglite';
import type { DatabaseThreadTaskArgs, DatabaseThreadTaskName, DatabaseThreadTaskResult } from './database-thread-tasks.js';
import type { WorkerStart } from './thread-protocol.js';
import { startWorkerThread, WorkerPort, type Ask, type ErrorContext } from './worker-port.js';

type Parsers = NonNullable<QueryOptions['parsers']>;

/** The part of PGlite's interface Drizzle calls. */
export interface PgliteClient {
  query<T>(query: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  exec(query: string, options?: QueryOptions): Promise<Results[]>;
  transaction<T>(callback: (tx: Transaction) => Promise<T>): Promise<T>;
}

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
  private readonly port: WorkerPort;
  private nextTransaction = 0;
  private closing: Promise<boolean> | undefined;

  private constructor(port: WorkerPort) {
    this.port = port;
  }

  /** Starts the worker and opens the database in it (`dataDir` as PGlite takes it; `loadDataDir` a `dumpDataDir()` tarball). */
  static async start(options: { dataDir?: string; loadDataDir?: Blob; statementStats?: boolean }): Promise<PgliteThread> {
    const load = options.loadDataDir ? await options.loadDataDir.arrayBuffer() : undefined;
    const data: WorkerStart = { dataDir: options.dataDir, loadDataDir: load, statementStats: options.statementStats };
    const worker = await startWorkerThread('pglite-worker', { workerData: data, transferList: load ? [load] : [] });
    return new PgliteThread(new WorkerPort(worker, 'PGlite worker'));
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

  /** Runs a task of database-thread-tasks.ts on the database's thread; resolves to its result. */
  runTask<K extends DatabaseThreadTaskName>(name: K, args: DatabaseThreadTaskArgs<K>): Promise<DatabaseThreadTaskResult<K>> {
    return this.ask({ op: 'task', name, args }) as Promise<DatabaseThreadTaskResult<K>>;
  }

  /** The data dir as a tarball, as `PGlite.dumpDataDir` (tests snapshot a migrated database with it). */
  async dumpDataDir(compression?: 'none' | 'gzip' | 'auto'): Promise<Blob> {
    const bytes = (await this.ask({ op: 'dump', compression })) as ArrayBuffer;
    return new Blob([bytes]);
  }

  /**
   * Closes the database and ends the thread; a second call waits for the first. Resolves to
   * whether the engine closed within `timeoutMs` (WorkerPort.close: past it the thread is ended
   * as a crash would end it, and the next open recovers).
   */
  close(options: { timeoutMs?: number } = {}): Promise<boolean> {
    this.closing ??= this.port.close('PGlite', options.timeoutMs);
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

  private ask(request: Ask, context: ErrorContext = {}): Promise<unknown> {
    return this.port.ask(request, context);
  }
}
