import { btree_gin } from '@electric-sql/pglite/contrib/btree_gin';
import { pg_stat_statements } from '@electric-sql/pglite/contrib/pg_stat_statements';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';

/**
 * The contrib extensions the migrations create, loaded wherever a PGlite engine starts: pg_trgm
 * and btree_gin (contact search's index of the workspace and trigrams, migrations 0030 and 0052).
 * Each one ships inside the `@electric-sql/pglite` package (`dist/pg_trgm.tar.gz`, unpacked into the engine's own file
 * system at start): nothing is fetched at install or run time. A data directory whose database
 * has an extension (a migrated one, or a test template's dump) must be opened with it loaded:
 * its index is read through the extension's functions.
 */
export const PGLITE_EXTENSIONS = { pg_trgm, btree_gin };

/**
 * What an engine loads: PGLITE_EXTENSIONS, and for a benchmark that asks (`statementStats`,
 * BENCH_PGSS=1) pg_stat_statements, a preloaded library that times every statement the engine
 * runs, triggers' and foreign-key checks' too. Never in the service: it costs each statement.
 */
export const pgliteExtensions = (options: { statementStats?: boolean } = {}) =>
  options.statementStats ? { ...PGLITE_EXTENSIONS, pg_stat_statements } : PGLITE_EXTENSIONS;
