import { sql } from 'drizzle-orm';
import type { Database } from './connect.js';

/**
 * The planner's statistics on the embedded database. A PostgreSQL server's autovacuum analyses
 * a table once enough of it changed; PGlite has no background workers, so nothing ever ran
 * ANALYZE there and every plan was made without statistics: with 100,000 contacts the planner
 * believed a workspace held two or three, and read all of them (sorted) for each search and
 * each first page of the list (3,476 and 3,482 buffers, against 30 and 53 once analysed;
 * BENCHMARKS.md, "Contact search by trigram (eighth pass)"). ANALYZE samples a bounded number
 * of rows per table (30,000 at the default target), so a pass costs about the same however
 * large the data grows (435 ms for the whole database at 100,000 contacts); it holds PGlite's
 * one thread meanwhile. Prepared statements are planned again once their tables' statistics
 * change (PostgreSQL invalidates them).
 */
export function createPlannerStatistics(database: Pick<Database, 'db' | 'kind'>) {
  return {
    /** Whether this database needs the job (embedded only: a server's autovacuum does it). */
    needed: database.kind === 'pglite',

    /** ANALYZE of every table, on the embedded database; false (nothing run) on a server. */
    async refresh(): Promise<boolean> {
      if (database.kind !== 'pglite') return false;
      await database.db.execute(sql`analyze`);
      return true;
    },
  };
}

export type PlannerStatistics = ReturnType<typeof createPlannerStatistics>;
