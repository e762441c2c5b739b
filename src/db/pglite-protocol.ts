/**
 * What crosses between the main thread (`pglite-thread.ts`) and the thread that owns the
 * embedded database (`pglite-worker.ts`). Only structured-clone values: functions (type
 * parsers, serializers) cannot cross, so a request names the type OIDs whose parsing the
 * caller does itself (`rawTypes`: the worker leaves those columns as Postgres text).
 */

export interface WorkerStart {
  dataDir?: string;
  /** A data dir tarball (`dumpDataDir`) to start from, as bytes (transferred, not copied). */
  loadDataDir?: ArrayBuffer;
}

export type Request =
  | { id: number; op: 'query'; sql: string; params: unknown[]; rowMode?: 'array' | 'object'; paramTypes?: number[]; rawTypes: number[]; tx?: number }
  | { id: number; op: 'exec'; sql: string; rawTypes: number[]; tx?: number }
  /** Opens transaction `tx`; the worker's engine then runs nothing else until `commit`/`rollback` of it. */
  | { id: number; op: 'begin'; tx: number }
  | { id: number; op: 'commit'; tx: number }
  | { id: number; op: 'rollback'; tx: number }
  | { id: number; op: 'dump'; compression?: 'none' | 'gzip' | 'auto' }
  | { id: number; op: 'close' };

/**
 * An error, reduced to plain fields. A Postgres error keeps its protocol fields (code,
 * detail, constraint, …); the query text and parameters never cross (the main thread
 * attaches its own copies, as PGlite does in-process).
 */
export type WireError =
  | { kind: 'database'; message: string; length: number; name: string; fields: Record<string, string | undefined> }
  | { kind: 'error'; name: string; message: string };

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
