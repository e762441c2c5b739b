/**
 * What crosses between the main thread and a database thread: the one that owns the embedded
 * database (`pglite-thread.ts` ↔ `pglite-worker.ts`), or the one that runs database tasks
 * against a server (`task-thread.ts` ↔ `task-worker.ts`). Only structured-clone values: functions (type
 * parsers, serializers) cannot cross, so a request names the type OIDs whose parsing the
 * caller does itself (`rawTypes`: the worker leaves those columns as Postgres text).
 */

import type { MessagePort } from 'node:worker_threads';

/** What the task worker (a PostgreSQL server) starts with: its own small pool's settings. */
export interface TaskWorkerStart {
  url: string;
  poolSize: number;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
}

export interface WorkerStart {
  dataDir?: string;
  /** A data dir tarball (`dumpDataDir`) to start from, as bytes (transferred, not copied). */
  loadDataDir?: ArrayBuffer;
  /** Load pg_stat_statements too (pglite-extensions.ts). */
  statementStats?: boolean;
}

export type Request =
  | { id: number; op: 'query'; sql: string; params: unknown[]; rowMode?: 'array' | 'object'; paramTypes?: number[]; rawTypes: number[]; tx?: number }
  | { id: number; op: 'exec'; sql: string; rawTypes: number[]; tx?: number }
  /** Opens transaction `tx`; the worker's engine then runs nothing else until `commit`/`rollback` of it. */
  | { id: number; op: 'begin'; tx: number }
  | { id: number; op: 'commit'; tx: number }
  | { id: number; op: 'rollback'; tx: number }
  | { id: number; op: 'dump'; compression?: 'none' | 'gzip' | 'auto' }
  /** Runs a task of database-thread-tasks.ts on the worker, against the engine directly; the reply is its (small) result. */
  | { id: number; op: 'task'; name: string; args: unknown }
  | { id: number; op: 'close' };

/**
 * An error, reduced to plain fields. A Postgres error keeps its protocol fields (code,
 * detail, constraint, …); the query text and parameters never cross (the main thread
 * attaches its own copies, as PGlite does in-process).
 */
export type WireError =
  | { kind: 'database'; message: string; length: number; name: string; fields: Record<string, string | undefined> }
  /** Any other error; `code` as a driver sets it (ECONNREFUSED, …). */
  | { kind: 'error'; name: string; message: string; code?: string };

export type Response = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

/** The worker's first message: the engine is open, or why it is not. */
export type Started = { started: true } | { started: false; error: WireError };

/** The Postgres error fields PGlite's `DatabaseError` carries (its `messages.DatabaseError`). */
export const DATABASE_ERROR_FIELDS = [
  'severity',
  'code',
  'detail',
  'hint',
  'position',
  'internalPosition',
  'internalQuery',
  'where',
  'schema',
  'table',
  'column',
  'dataType',
  'constraint',
  'file',
  'line',
  'routine',
] as const;

/** An error as it crosses back (on the thread that threw it). */
export function wireError(error: unknown): WireError {
  // A task's statement failed inside Drizzle: its wrapper's message carries the statement's
  // parameters (addresses, user agents); only what it wraps crosses (the database's error, or
  // the driver's: a refused connection, a timeout).
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause && /^Failed query/.test((error as Error).message ?? '')) return wireError(cause);
  const e = error as Record<string, unknown> | null;
  if (e && typeof e === 'object' && typeof e.code === 'string' && typeof e.length === 'number') {
    const fields: Record<string, string | undefined> = {};
    for (const field of DATABASE_ERROR_FIELDS) if (typeof e[field] === 'string') fields[field] = e[field] as string;
    return { kind: 'database', message: String(e.message), length: e.length, name: String(e.name), fields };
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return { kind: 'error', name: error instanceof Error ? error.name : 'Error', message: message.split('\nparams:')[0]!, code };
}

/** Answers `request` with what `outcome` settles to (on the worker's side). */
export function replyTo(port: MessagePort, request: Request, outcome: Promise<unknown>) {
  outcome.then(
    (value) => {
      const response: Response = { id: request.id, ok: true, value };
      // A dump is moved, not copied (it is the whole data dir).
      port.postMessage(response, value instanceof ArrayBuffer ? [value] : []);
    },
    (error: unknown) => port.postMessage({ id: request.id, ok: false, error: wireError(error) } satisfies Response),
  );
}
