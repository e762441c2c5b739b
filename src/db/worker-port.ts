import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { messages, type QueryOptions } from '@electric-sql/pglite';
import { settlesWithin } from '../time.js';
import { DATABASE_ERROR_FIELDS, type Request, type Response, type Started, type WireError } from './thread-protocol.js';

/*
 * The main thread's side of a database thread (pglite-thread.ts, task-thread.ts): starts the
 * worker, numbers requests, matches answers to them, and rebuilds errors that crossed.
 */

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void; query?: string; params?: unknown[]; options?: QueryOptions };
/** A request without its id (the port numbers them). */
export type Ask = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;
/** What a failed statement's error keeps on this thread (as PGlite attaches it in-process). */
export type ErrorContext = Omit<Pending, 'resolve' | 'reject'>;

/** Starts `file` (a sibling module, `.ts` under tsx or the built `.js`) and waits for its Started message. */
export async function startWorkerThread(file: 'pglite-worker' | 'task-worker', options: WorkerOptions): Promise<Worker> {
  const worker = newWorker(file, options);
  const started = await new Promise<Started>((resolve, reject) => {
    const early = (code: number) => reject(new Error(`${file} exited (code ${code}) before it started`));
    worker.once('error', reject).once('exit', early).once('message', (message: Started) => {
      worker.off('error', reject).off('exit', early);
      resolve(message);
    });
  });
  if (!started.started) {
    await worker.terminate();
    throw toError(started.error);
  }
  return worker;
}

/**
 * The worker's module: the compiled JS next to this file, or (under tsx or vitest) the
 * TypeScript, through a bootstrap that registers tsx's loader in the new thread first (a
 * worker does not inherit the hooks `--import tsx` installed in this one).
 */
function newWorker(file: string, options: WorkerOptions): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(`./${file}.js`, import.meta.url), options);
  const source = new URL(`./${file}.ts`, import.meta.url).href;
  // The ESM build of tsx's API (its package exports map `tsx/esm/api` to the CJS one for require).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

export function toError(wire: WireError, pending?: ErrorContext): Error {
  if (wire.kind === 'error') {
    const error = new Error(wire.message);
    error.name = wire.name;
    return wire.code === undefined ? error : Object.assign(error, { code: wire.code });
  }
  const error = new messages.DatabaseError(wire.message, wire.length, wire.name as messages.MessageName);
  for (const field of DATABASE_ERROR_FIELDS) error[field] = wire.fields[field];
  // As PGlite's own errors (its makePGliteError): the statement and its parameters, kept on this thread.
  return Object.assign(error, { query: pending?.query, params: pending?.params, queryOptions: pending?.options });
}

export class WorkerPort {
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Why nothing more can be asked (the worker failed, exited or was closed). */
  gone: Error | undefined;

  constructor(
    readonly worker: Worker,
    what: string,
  ) {
    worker.on('message', (response: Response) => this.settle(response));
    worker.on('error', (error) => this.fail(new Error(`${what} failed: ${error.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`${what} exited (code ${code})`)));
  }

  ask(request: Ask, context: ErrorContext = {}): Promise<unknown> {
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

  /**
   * Asks the worker to close what it holds and ends it; resolves to whether it answered within
   * `timeoutMs` (default: no limit). Past it the thread is ended anyway, mid-statement if need be:
   * on the embedded database that is a crash (the next open replays the WAL; a transaction not
   * committed is gone), on a server the connections drop and the server rolls back what was open.
   * A statement cannot be cut short otherwise: PGlite runs it synchronously on that thread.
   */
  async close(what: string, timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    try {
      if (this.gone) return true;
      const closing = this.ask({ op: 'close' });
      if (!(await settlesWithin(closing, timeoutMs))) return false;
      await closing; // a close that failed throws, as before
      return true;
    } finally {
      this.gone ??= new Error(`${what} is closed`);
      await this.worker.terminate();
    }
  }

  /** The worker is gone: nothing pending will be answered. */
  fail(error: Error) {
    this.gone ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
