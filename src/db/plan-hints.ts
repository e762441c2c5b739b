/**
 * A statement that starts with this comment is run with a generic plan on the embedded
 * database (`pglite-prepared.ts`): planned once, not again for every call. For statements
 * whose custom plan cannot beat the generic one — index probes by key whatever the values —
 * and which run once per round of sends, where planning cost as much as executing. A
 * PostgreSQL server ignores it (a comment).
 */
export const GENERIC_PLAN = '/* generic plan */';
