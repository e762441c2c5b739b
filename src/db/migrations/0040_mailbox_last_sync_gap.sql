-- A resync that could not read everything since the last sync (GMAIL_RESYNC_MAX_MESSAGES): when,
-- from when, how many it read. The pass's last_sync_error says it until the next pass succeeds;
-- this stays, because the mail it did not read stays unread (gmail/README.md, "Health").
-- Nullable, no default: no table rewrite.
ALTER TABLE "mailboxes" ADD COLUMN "last_sync_gap" jsonb;
