import { sql } from 'drizzle-orm';
import type { Database } from './connect.js';
import { pgArray, rowsOf } from './pg-array.js';

/**
 * What a PostgreSQL server's autovacuum and checkpointer do, for the embedded database. PGlite
 * has no background workers, so nothing analysed or vacuumed it (and nothing checkpointed it:
 * `checkpoint` below):
 * - **Statistics.** Every plan was made without them: with 100,000 contacts the planner believed
 *   a workspace held two or three and read all of them (sorted) for each search and each first
 *   page of the list (3,476 and 3,482 buffers, against 30 and 53 once analysed; BENCHMARKS.md,
 *   "Contact search by trigram (eighth pass)"). Prepared statements are planned again once
 *   their tables' statistics change (PostgreSQL invalidates them).
 * - **Dead rows.** Each send updates its ledger row three times and its message twice, and
 *   retention deletes: without VACUUM the space of old row versions was never reused (the data
 *   directory only grew) and nothing froze old rows against transaction-id wraparound.
 * Both hold PGlite's one thread while they run (requests that need SQL wait; tracking hits are
 * buffered), and their cost grows with a table's size (ANALYZE of a whole 778 MB database took
 * 2.4 s, changed or not; a review measured it). So, as autovacuum decides, only the tables that
 * changed enough since their last pass are done, one statement each, so that queued requests run
 * in between: a table never analysed or vacuumed (a new one, or the activity counters lost in a
 * crash), or with more changed rows than the thresholds below. On a server these do nothing.
 */
/** autovacuum's defaults: a table is analysed past 50 + 10% of its rows changed, vacuumed past 50 + 20% dead. */
export const ANALYZE_THRESHOLD = { rows: 50, fraction: 0.1 };
const VACUUM_THRESHOLD = { rows: 50, fraction: 0.2 };
/** A table whose oldest unfrozen row is this many transactions old is vacuumed whatever its dead rows (autovacuum forces it at 200 million). */
const FREEZE_AGE = 100_000_000;
/**
 * A checkpoint is due past this much WAL since the last one, as a server's checkpointer starts
 * one at about half of `max_wal_size` (1 GB)...
 */
export const CHECKPOINT_WAL_BYTES = 512 * 1024 * 1024;
/** ...or this long after it (`checkpoint_timeout`), once at least one WAL segment was written (an idle database takes none). */
export const CHECKPOINT_MAX_AGE_MS = 5 * 60_000;
const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

export interface MaintenanceOptions {
  /**
   * True once the process is stopping: no further table is started (what is left stays due for
   * the next run). The one engine thread is then the event writer's: the clicks held for the
   * classifier are written at a stop (src/tracking/README.md "Shutdown").
   */
  stopping?: () => boolean;
}

export function createEmbeddedMaintenance(database: Pick<Database, 'db' | 'kind'>) {
  const embedded = database.kind === 'pglite';
  const { db } = database;
  /**
   * Names of the tables the query selects, quoted for SQL (`format('%I.%I')`). The one backend
   * publishes its activity counters when a statement ends, at most once a second, so a read
   * could miss the last second's changes: the statement before it forces them out.
   */
  const tables = async (query: ReturnType<typeof sql>) => {
    await db.execute(sql`select pg_stat_force_next_flush()`);
    return rowsOf<{ name: string }>(await db.execute(query)).map((r) => r.name);
  };
  /**
   * The tables of one kind — ordinary (`r`) or partitioned parents (`p`) — for which `due` holds,
   * over pg_stat_user_tables `s` and pg_class `c`.
   */
  const tablesWhere = (kind: 'r' | 'p', due: ReturnType<typeof sql>) =>
    tables(sql`
      select format('%I.%I', s.schemaname, s.relname) as name
      from pg_stat_user_tables s join pg_class c on c.oid = s.relid
      where c.relkind = ${kind} and (${due})
      order by 1`);

  return {
    /** Whether this database needs the jobs (embedded only). */
    needed: embedded,

    /**
     * ANALYZE of each table due (never analysed, or past the threshold); a partitioned table's
     * own statistics when it has none yet or one of its partitions was due. Returns the tables
     * analysed (none on a server).
     */
    async analyze(options: MaintenanceOptions = {}): Promise<string[]> {
      if (!embedded) return [];
      const stopping = options.stopping ?? (() => false);
      const due = await tablesWhere('r', sql`s.last_analyze is null
        or s.n_mod_since_analyze > ${ANALYZE_THRESHOLD.rows}::float8 + ${ANALYZE_THRESHOLD.fraction}::float8 * s.n_live_tup`);
      const parents = await tablesWhere('p', sql`s.last_analyze is null or exists (
        select 1 from pg_inherits i join pg_class p on p.oid = i.inhrelid join pg_namespace n on n.oid = p.relnamespace
        where i.inhparent = c.oid and format('%I.%I', n.nspname, p.relname) = any(${pgArray(due)}::text[]))`);
      const done: string[] = [];
      for (const name of due) {
        if (stopping()) return done;
        await db.execute(sql.raw(`analyze ${name}`));
        done.push(name);
      }
      // ONLY: the partitions were analysed above (or did not change); this samples the parent's rows for its own statistics.
      for (const name of parents) {
        if (stopping()) return done;
        await db.execute(sql.raw(`analyze only ${name}`));
        done.push(name);
      }
      return done;
    },

    /**
     * CHECKPOINT when one is due (above). PGlite runs PostgreSQL as a single backend, with no
     * checkpointer: it never took one on its own, not even past `max_wal_size`, so its WAL only
     * grew — 500 MB after 1.5 million small inserts, never removed while it ran — and a restart
     * after a crash replayed all of it (4.4 s for those 500 MB, 0.7 s after a checkpoint;
     * BENCHMARKS.md, issue 14 sixteenth pass). A checkpoint lets PostgreSQL recycle the segments
     * before its redo point. Returns the WAL it covered, or undefined when none was due (or on
     * a server, whose checkpointer does this).
     */
    async checkpoint(options: { walBytes?: number; maxAgeMs?: number } = {}): Promise<{ walBytes: number } | undefined> {
      if (!embedded) return undefined;
      const [state] = rowsOf<{ wal_bytes: number; age_ms: number }>(
        await db.execute(sql`
          select pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn)::float8 as wal_bytes,
                 (extract(epoch from now() - checkpoint_time) * 1000)::float8 as age_ms
          from pg_control_checkpoint()`),
      );
      const walBytes = Number(state!.wal_bytes);
      const due = walBytes >= (options.walBytes ?? CHECKPOINT_WAL_BYTES) || (walBytes >= WAL_SEGMENT_BYTES && Number(state!.age_ms) >= (options.maxAgeMs ?? CHECKPOINT_MAX_AGE_MS));
      if (!due) return undefined;
      await db.execute(sql`checkpoint`);
      return { walBytes };
    },

    /** VACUUM (not FULL: nothing locked against reads, nothing rewritten) of each table due; returns them (none on a server). */
    async vacuum(options: MaintenanceOptions = {}): Promise<string[]> {
      if (!embedded) return [];
      const stopping = options.stopping ?? (() => false);
      const due = await tablesWhere('r', sql`s.last_vacuum is null
        or s.n_dead_tup > ${VACUUM_THRESHOLD.rows}::float8 + ${VACUUM_THRESHOLD.fraction}::float8 * s.n_live_tup
        or age(c.relfrozenxid) > ${FREEZE_AGE}::int`);
      const done: string[] = [];
      for (const name of due) {
        if (stopping()) return done;
        await db.execute(sql.raw(`vacuum ${name}`));
        done.push(name);
      }
      return done;
    },
  };
}

export type EmbeddedMaintenance = ReturnType<typeof createEmbeddedMaintenance>;
