-- How far an unfinished resync got (a new nullable column; no rewrite, no index): the next resync
-- of the same window goes on after it instead of reading every message again
-- (gmail/sync.service.ts). Null until a resync is interrupted; the previous release never reads it.
ALTER TABLE "mailboxes" ADD COLUMN IF NOT EXISTS "resync_checkpoint" jsonb;
