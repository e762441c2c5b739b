/**
 * Named prepared statements for the embedded database (PGlite), kept by the thread that owns
 * it (`pglite-worker.ts`). PGlite's `query` parses, analyses, rewrites and plans every
 * statement again and enters the engine six times for it (Parse, Describe, Bind, Describe,
 * Execute, Sync); for the send pipeline's statements (a CTE chain with triggers) that was most
 * of their cost (BENCHMARKS.md, "Send pipeline, fifth pass"). A statement text seen a second
 * time is prepared under a name (a `GENERIC_PLAN` one again after 100 runs or 5 s, so its plan
 * follows the tables' sizes); every later run is one entry into the engine (Bind,
 * Describe, Execute, Sync in one message), and PostgreSQL's plan cache decides between a
 * custom and a generic plan as it does for any prepared statement, unless a hint decides
 * (`GENERIC_PLAN`, `CUSTOM_PLAN`: plan-hints.ts). Texts seen once (seeding,
 * migrations, one-off reads) are run as before.
 *
 * The same statement text, the same parameters, the same snapshot per statement, the same locks
 * (PGlite's own mutexes, taken as its `query` takes them). Where a prepared statement could
 * differ from one parsed again — PostgreSQL keeps the parameter types it inferred at Parse, and
 * refuses a plan whose result type changed — the cache is forgotten whole after any statement
 * that may change the schema (`exec`, which migrations use, and texts starting with CREATE,
 * ALTER, DROP, DO, DEALLOCATE or DISCARD), so the next runs parse again and see the new schema,
 * inside a transaction too. Schema changes made inside a function (the monthly partitions)
 * change no result type; PostgreSQL re-plans for them by itself.
 */
import { parse, protocol, type PGlite, type QueryOptions, type Results } from '@electric-sql/pglite';
import { CUSTOM_PLAN, GENERIC_PLAN } from './plan-hints.js';

/** Statement texts remembered (prepared or seen once); the least recently used beyond this is forgotten (and deallocated). */
const CAPACITY = 200;

interface Entry {
  /** The prepared statement's name, once prepared. */
  name?: string;
  /** Parameter types, as PostgreSQL inferred them at Parse. */
  paramTypes?: number[];
  /** Runs since it was prepared, and when (ms, performance.now()). */
  runs?: number;
  preparedAt?: number;
}

/**
 * A hinted statement (GENERIC_PLAN) is prepared again after this many runs or this long. Its generic plan is
 * made once, with the table sizes of that moment, and is planned again by PostgreSQL only when an
 * ANALYZE of its tables invalidates it — on PGlite the worker's `embedded-analyze` job, every 10
 * minutes at most (embedded-maintenance.ts), and before this pass never: the send claim planned
 * while the tables were small kept reading its ledger rows and a workspace's suppressions by
 * scans as they grew (1.24 s a claim after 300,000 suppressions; BENCHMARKS.md, "sixth pass").
 * A table's size grows faster than that job's period, so the claim is planned again here too: a
 * few milliseconds, at most once per 100 runs or 5 s.
 */
const REPLAN_EVERY = { runs: 100, ms: 5_000 };
const planAged = (entry: Entry) => (entry.runs ?? 0) >= REPLAN_EVERY.runs || performance.now() - (entry.preparedAt ?? 0) >= REPLAN_EVERY.ms;

/** The statements that set `plan_cache_mode` around a hinted one, and reset it after. */
const GENERIC_ON = 'it_generic_on';
const CUSTOM_ON = 'it_custom_on';
const PLAN_MODE_OFF = 'it_plan_mode_reset';
const PLAN_MODE_SWITCHES: [name: string, text: string][] = [
  [GENERIC_ON, 'set plan_cache_mode = force_generic_plan'],
  [CUSTOM_ON, 'set plan_cache_mode = force_custom_plan'],
  [PLAN_MODE_OFF, 'reset plan_cache_mode'],
];
/** The switch a statement's hint asks for, if any (plan-hints.ts). */
const planModeOf = (text: string) => (text.startsWith(GENERIC_PLAN) ? GENERIC_ON : text.includes(CUSTOM_PLAN) ? CUSTOM_ON : undefined);

/** Statements after which every prepared one is forgotten (they may change the schema or drop prepared statements). */
const SCHEMA_CHANGE = /^\s*(create|alter|drop|do|deallocate|discard)\b/i;

/** PostgreSQL's "the prepared statement no longer fits" (a table changed under it) or "no such statement": prepare it again. */
const isStale = (error: unknown) => {
  const e = error as { code?: string; message?: string } | null;
  return (e?.code === '0A000' && /cached plan/.test(e.message ?? '')) || e?.code === '26000';
};

type Parsers = Parameters<typeof parse.parseResults>[1];

type Internals = PGlite & {
  serializers: Record<number, (value: unknown) => string>;
  parsers: Parsers;
  _runExclusiveQuery<T>(fn: () => Promise<T>): Promise<T>;
  _runExclusiveTransaction<T>(fn: () => Promise<T>): Promise<T>;
  _checkReady(): Promise<void>;
};

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};

export function createPreparedQueries(pglite: PGlite) {
  const db = pglite as Internals;
  const entries = new Map<string, Entry>();
  let nextName = 0;

  /** Runs protocol messages as one engine call; throws the statement's error after the Sync ran. */
  const run = (message: Uint8Array) => db.execProtocolStream(message, { syncToFs: false });

  /**
   * The statements that set and reset `plan_cache_mode`, prepared with the first hinted
   * statement (closed first: an earlier call may have prepared them and failed later).
   */
  let switchesReady = false;
  const planModeSwitches = () =>
    switchesReady
      ? []
      : PLAN_MODE_SWITCHES.flatMap(([name, text]) => [protocol.serialize.close({ type: 'S', name }), protocol.serialize.parse({ name, text })]);

  /**
   * PGlite's parsers with the caller's on top, merged once per set of caller types: PGlite's
   * parseResults merges them again on every call, copying a parser for each of the hundreds of
   * array types (a sixth of a send statement's time on this thread). Keyed by the types alone:
   * the worker's parsers for them are always the same (they keep the text).
   */
  const merged = new Map<string, Parsers>();
  function parsersFor(options: QueryOptions | undefined) {
    if (!options?.parsers) return db.parsers;
    const key = Object.keys(options.parsers).join(',');
    let parsers = merged.get(key);
    if (!parsers) merged.set(key, (parsers = { ...db.parsers, ...options.parsers }));
    return parsers;
  }

  /** Close messages of statements forgotten, sent with the next Parse. */
  let closes: Uint8Array[] = [];

  /**
   * Forgets every prepared statement (closed with the next Parse), the plan-mode switches
   * too: after a schema change the next runs parse again, as PGlite's `query` would.
   */
  function forgetAll() {
    for (const entry of entries.values()) if (entry.name) closes.push(protocol.serialize.close({ type: 'S', name: entry.name }));
    entries.clear();
    switchesReady = false;
  }

  /** Marks `text` most recently used; forgets the least recently used beyond the capacity. */
  function remember(text: string, entry: Entry) {
    entries.delete(text);
    entries.set(text, entry);
    while (entries.size > CAPACITY) {
      const [oldest, old] = entries.entries().next().value as [string, Entry];
      entries.delete(oldest);
      if (old.name) closes.push(protocol.serialize.close({ type: 'S', name: old.name }));
    }
  }

  async function prepare(text: string, options: QueryOptions | undefined): Promise<Entry> {
    const name = `it_${++nextName}`;
    const closing = closes;
    closes = [];
    const messages = await run(
      concat([...closing, protocol.serialize.parse({ name, text, types: options?.paramTypes }), protocol.serialize.describe({ type: 'S', name }), protocol.serialize.sync()]),
    );
    return { name, paramTypes: parse.parseDescribeStatementResults(messages), preparedAt: performance.now() };
  }

  async function runPrepared<T>(text: string, entry: Required<Entry>, params: unknown[], options: QueryOptions | undefined): Promise<Results<T>> {
    const values = params.map((param, i) => {
      if (param === null || param === undefined) return null;
      const serialize = db.serializers[entry.paramTypes[i]!];
      return serialize ? serialize(param) : String(param);
    });
    const { bind, describe, execute, sync } = protocol.serialize;
    const statement = [bind({ statement: entry.name, values: values as string[] }), describe({ type: 'P' }), execute({})];
    // A generic or custom plan for a hinted statement: `plan_cache_mode` is read when Bind picks
    // the plan, so it is set just around it, in the same engine call. If the statement fails,
    // aborting its transaction undoes the SET as well (a SET is transactional).
    const mode = planModeOf(text);
    try {
      const messages = await run(
        concat(mode ? [...planModeSwitches(), bind({ statement: mode }), execute({}), ...statement, bind({ statement: PLAN_MODE_OFF }), execute({}), sync()] : [...statement, sync()]),
      );
      if (mode) switchesReady = true;
      return parse.parseResults(messages, parsersFor(options), { rowMode: options?.rowMode })[mode ? 1 : 0] as Results<T>;
    } catch (error) {
      if (isStale(error) && entries.get(text)?.name === entry.name) {
        entries.delete(text);
        closes.push(protocol.serialize.close({ type: 'S', name: entry.name }));
      }
      // No such statement: the switches may be gone too (DEALLOCATE ALL); prepared again next time.
      if ((error as { code?: string } | null)?.code === '26000') switchesReady = false;
      throw error;
    }
  }

  /**
   * As `PGlite.query` (or a transaction's `tx.query` when `inTransaction`: the caller's
   * transaction already holds PGlite's transaction lock).
   */
  async function query<T>(text: string, params: unknown[], options: QueryOptions | undefined, inTransaction: boolean, unprepared: () => Promise<Results<T>>): Promise<Results<T>> {
    if (SCHEMA_CHANGE.test(text)) return afterSchemaChange(unprepared);
    if (!entries.has(text)) {
      remember(text, {});
      return unprepared();
    }
    const statement = async () => {
      await db._checkReady();
      // Looked up under the lock: a name looked up before it might have been closed meanwhile.
      const runOnce = async () => {
        let entry = entries.get(text);
        if (entry?.name && text.startsWith(GENERIC_PLAN) && planAged(entry)) {
          closes.push(protocol.serialize.close({ type: 'S', name: entry.name }));
          entry = undefined;
        }
        if (!entry?.name) entry = await prepare(text, options);
        entry.runs = (entry.runs ?? 0) + 1;
        remember(text, entry);
        return runPrepared<T>(text, entry as Required<Entry>, params, options);
      };
      let result: Results<T>;
      try {
        result = await runOnce();
      } catch (error) {
        // A table changed under the statement ("cached plan must not change result type"):
        // prepared again, it runs as an unprepared one would have. Inside a transaction the
        // error has aborted it, as a server's would.
        if (inTransaction || db.isInTransaction() || !isStale(error)) throw error;
        result = await runOnce();
      }
      if (!inTransaction && !db.isInTransaction()) await db.syncToFs();
      return result;
    };
    return inTransaction ? db._runExclusiveQuery(statement) : db._runExclusiveTransaction(() => db._runExclusiveQuery(statement));
  }

  /**
   * Runs a statement that may change the schema unprepared, forgetting every prepared statement
   * as it arrives (statements queued behind it then parse after it) and once it ran (whether it
   * succeeded or not: what was prepared meanwhile is parsed again).
   */
  async function afterSchemaChange<T>(run: () => Promise<T>): Promise<T> {
    forgetAll();
    try {
      return await run();
    } finally {
      forgetAll();
    }
  }

  return { query, afterSchemaChange };
}

export type PreparedQueries = ReturnType<typeof createPreparedQueries>;
