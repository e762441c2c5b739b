-- When a mailbox's sync pass last failed (a new nullable column; no rewrite, no index). A
-- sequence whose mailbox's latest pass failed waits until one succeeds (campaigns/mailbox-hold.ts):
-- with sync failing, a follow-up went out to someone whose reply had not been read yet. Rows keep
-- null until their next failure; the previous release never reads the column.
ALTER TABLE "mailboxes" ADD COLUMN "last_sync_failed_at" timestamp with time zone;