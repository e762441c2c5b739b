import { sql } from 'drizzle-orm';
import type { Database } from './connect.js';

/**
 * What a PostgreSQL server's autovacuum does, for the embedded database. PGlite has no
 * background workers, so nothing analysed or vacuumed it:
 * - **Statistics.** Every plan was made without them: with 100,000 contacts the planner believed
 *   a workspace held two or three and read all of them (sorted) for each search and each first
 *   page of the list (3,476 and 3,482 buffers, against 30 and 53 once analysed; BENCHMARKS.md,
 *   "Contact search by trigram (eighth pass)"). ANALYZE samples a bounded number of rows per
 *   table (30,000 at the default target), so a pass costs about the same however large the data
 *   grows (435 ms for the whole database at 100,000 contacts). Prepared statements are planned
 *   again once their tables' statistics change (PostgreSQL invalidates them).
 * - **Dead rows.** Each send updates its ledger row three times and its message twice, and
 *   retention deletes: without VACUUM the space of old row versions was never reused (the data
 *   directory only grew) and nothing froze old rows against transaction-id wraparound. VACUUM
 *   reads the pages changed since the last one (the visibility map skips the rest), so a daily
 *   pass costs about a day's writes; the first one on an old database reads it all.
 * Both hold PGlite's one thread while they run (requests that need SQL wait; tracking hits are
 * buffered). On a server they are autovacuum's job and these do nothing.
 */
export function createEmbeddedMaintenance(database: Pick<Database, 'db' | 'kind'>) {
  const embedded = database.kind === 'pglite';
  return {
    /** Whether this database needs the jobs (embedded only). */
    needed: embedded,

    /** ANALYZE of every table on the embedded database; false (nothing run) on a server. */
    async analyze(): Promise<boolean> {
      if (!embedded) return false;
      await database.db.execute(sql`analyze`);
      return true;
    },

    /** VACUUM (not FULL: nothing is locked against reads or rewritten) of every table on the embedded database; false on a server. */
    async vacuum(): Promise<boolean> {
      if (!embedded) return false;
      await database.db.execute(sql`vacuum`);
      return true;
    },
  };
}

export type EmbeddedMaintenance = ReturnType<typeof createEmbeddedMaintenance>;
