-- Less written per campaign send (issue #14, twelfth pass). A campaign's claim writes a
-- `messages` row with no Gmail id (Gmail has not answered yet) and no lease (the ledger row holds
-- the lease): until now both still got an entry in these two indexes, which nothing reads for
-- such rows. Partial now: the Gmail-id uniqueness never applied to null ids (nulls never
-- conflict), and the 1:1 lease look (`status = 'sending' and lease_expires_at < …`) implies the
-- new predicate. The sync's insert names the predicate in its conflict target.
-- Also from this migration on, a campaign claim writes no `message_contacts` row: the ledger's
-- `contact_id` and `message_id` link the message to its contact (timeline, purge); rows written
-- before stay and are read as before.
-- Rebuilding the two indexes takes a write lock on `messages` while it runs: at millions of
-- rows, run the migration in a quiet window.
DROP INDEX "messages_mailbox_gmail_id_unique";--> statement-breakpoint
DROP INDEX "messages_lease_idx";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_mailbox_gmail_id_unique" ON "messages" USING btree ("mailbox_id","gmail_message_id","workspace_id") WHERE "messages"."gmail_message_id" is not null;--> statement-breakpoint
CREATE INDEX "messages_lease_idx" ON "messages" USING btree ("lease_expires_at") WHERE "messages"."status" = 'sending' and "messages"."lease_expires_at" is not null;