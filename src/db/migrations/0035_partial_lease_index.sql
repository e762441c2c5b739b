-- Less written per campaign send (issue #14, twelfth pass). A campaign's claim writes a
-- `messages` row with no lease (the ledger row holds a campaign send's lease), and until now it
-- still got an entry in the 1:1 lease index, which nothing reads for such rows. Partial now; the
-- 1:1 lease look (`status = 'sending' and lease_expires_at < …`) implies the new predicate, in
-- old processes too.
-- From this release on, a campaign claim also writes no `message_contacts` row: the ledger's
-- `contact_id` and `message_id` link the message to its contact (timeline, purge); rows written
-- before stay and are read as before. During a rolling deploy, a process of the previous release
-- shows on a contact's timeline only the campaign mail claimed before (nothing is lost).
-- DROP INDEX takes an ACCESS EXCLUSIVE lock on `messages` (reads wait too) until the migration's
-- transaction commits, the index rebuilt: at millions of rows, run it in a quiet window.
DROP INDEX "messages_lease_idx";--> statement-breakpoint
CREATE INDEX "messages_lease_idx" ON "messages" USING btree ("lease_expires_at") WHERE "messages"."status" = 'sending' and "messages"."lease_expires_at" is not null;