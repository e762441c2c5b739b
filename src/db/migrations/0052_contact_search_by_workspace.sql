-- Issue #14: contact search led by the workspace (BENCHMARKS.md, "Contact search across
-- workspaces"). The trigram index of migration 0030 held every workspace's contacts: a text
-- common in other workspaces but rare in this one (a surname) made its bitmap read all of their
-- matches, or — as the planner judges the text by every workspace's statistics — the newest-first
-- walk read the whole workspace (14,600 buffers, 515 ms for one match among 50,000 contacts, a
-- million in all). One GIN index of the workspace and the trigrams (btree_gin gives uuid a GIN
-- operator class) intersects the two: 121 buffers, 5 ms. The search reads it through a bounded
-- walk first (contacts.repo.ts `list`).
--
-- btree_gin is a contrib extension, trusted since PostgreSQL 13 like pg_trgm (migration 0030);
-- PGlite loads it from its npm package (src/db/pglite-extensions.ts). The index is built while
-- contacts are locked against writes (inside the migration's transaction): on a large table,
-- run the migration in a quiet window.
CREATE EXTENSION IF NOT EXISTS btree_gin;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "contacts_search_workspace_trgm_idx" ON "contacts" USING gin ("workspace_id",(coalesce("first_name", '') || ' ' || coalesce("last_name", '') || ' ' || "email") gin_trgm_ops) WITH (fastupdate=true,gin_pending_list_limit=256);--> statement-breakpoint
DROP INDEX IF EXISTS "contacts_search_trgm_idx";
