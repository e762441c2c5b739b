-- Less written per campaign send (issue #14, thirteenth pass).
--
-- 1. A batch's reservation (500 queued rows given this worker's lease) rewrote every row in
--    every ledger index: the lease's expiry was a key of campaign_sends_lease_idx, so no update
--    of it could be HOT, and launch filled the pages to the brim. The `sending` rows are now
--    indexed by their id (crash recovery and the parked sends read all of them, a few: the sends
--    in flight), and the table keeps 15% of each new page free: a reservation, its release and a
--    lease's renewal change only unindexed columns and stay on their page (PGlite at 100,000:
--    the reservation's buffers 29 → 11 a message; BENCHMARKS.md, thirteenth pass).
--    The fillfactor applies to pages written from now on; the ledger's older rows are sent or
--    dropped by time.
-- 2. messages_mailbox_gmail_id_unique leaves out rows without a Gmail id (a claimed send until
--    Gmail answers): the sync's insert names the predicate in its conflict target since the
--    previous release (migration 0035's note), so a rolling deploy from that release keeps
--    working. Processes older than it name no predicate: their sync inserts would fail against
--    this index ("no unique or exclusion constraint matching the ON CONFLICT specification"), so
--    upgrade one release at a time (README), or stop older processes before migrating.
-- The index drops take an ACCESS EXCLUSIVE lock on their tables until the migration commits and
-- the new indexes are built: at millions of rows, run it in a quiet window.
ALTER TABLE "campaign_sends" SET (fillfactor = 85);--> statement-breakpoint
DROP INDEX "campaign_sends_lease_idx";--> statement-breakpoint
CREATE INDEX "campaign_sends_sending_idx" ON "campaign_sends" USING btree ("id") WHERE "campaign_sends"."status" = 'sending';--> statement-breakpoint
DROP INDEX "messages_mailbox_gmail_id_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_mailbox_gmail_id_unique" ON "messages" USING btree ("mailbox_id","gmail_message_id","workspace_id") WHERE "messages"."gmail_message_id" is not null;
