import { sql } from 'drizzle-orm';

/**
 * A statement that starts with this comment is run with a generic plan on the embedded
 * database (`pglite-prepared.ts`): planned once, not again for every call. For statements
 * whose custom plan cannot beat the generic one — index probes by key whatever the values —
 * and which run once per round of sends, where planning cost as much as executing. A
 * PostgreSQL server ignores it (a comment).
 */
export const GENERIC_PLAN = '/* generic plan */';

/**
 * A statement that contains this comment (anywhere: a query builder's statement carries it in a
 * condition) is planned for its values on every run on the embedded database: PostgreSQL's plan
 * cache otherwise settles on a generic plan after five runs when that looks no dearer than the
 * custom ones, and for a statement whose best plan depends on a parameter's value — contact
 * search, where a rare text wants the trigram index and a common one the newest-first walk —
 * that plan is wrong for one of them (the walk read 110,000 contacts for a rare text; BENCHMARKS.md,
 * "Contact search by trigram"). A server ignores it (its driver prepares nothing).
 */
export const CUSTOM_PLAN = '/* custom plan */';

/**
 * Appended to an `exists (…)` subquery: it stays an index probe per row. Without it PostgreSQL
 * may plan the alternative of hashing the subquery's whole table once per statement — cheap
 * while the table is small, and on PGlite a generic plan (the send claim's, above) chosen then
 * is kept as the table grows (no autovacuum, no re-plan): the claim then read every
 * workspace's suppressions each round (4 ms → 340 ms a claim after 300,000 suppressions were
 * added; BENCHMARKS.md, "sixth pass"). `offset 0` keeps PostgreSQL from turning the EXISTS into
 * a hashable `= ANY` at all.
 */
export const PROBE_ONLY = sql` offset 0`;
