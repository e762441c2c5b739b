-- Issue #14, the query-plan audit at 100k (BENCHMARKS.md, "Query plans at 100k: the audit").
-- Deleting a contact or a recipient row runs the foreign keys' own lookups once per deleted row:
-- `campaign_sends.contact_id` (set null), `consents.contact_id` and `message_contacts.contact_id`
-- (cascade), `campaign_sends.recipient_id` (the reference check). None had an index led by that
-- column, so PostgreSQL 15 read the whole table for each row: purging a closed workspace of 330
-- contacts beside one of 100,000 read 64.7M ledger, 39.7M consent and 32.4M timeline tuples
-- (13.2 s); purging one contact ~1.1M tuples. The consents' and timeline links' indexes get the
-- contact first (every other lookup names both columns: no extra index to write); the ledger
-- gets two: its contacts' sends, and its recipients' sends by (recipient, campaign, step), which
-- also serves a later step's reply and bounce checks in one descent if a plan picks it. The
-- suppression list's pages (newest first) get an index of their order instead of a sort of the
-- workspace's whole list.
DROP INDEX "consents_latest_idx";--> statement-breakpoint
DROP INDEX "message_contacts_contact_idx";--> statement-breakpoint
CREATE INDEX "suppressions_workspace_created_idx" ON "suppressions" USING btree ("workspace_id","created_at","id");--> statement-breakpoint
CREATE INDEX "campaign_sends_contact_idx" ON "campaign_sends" USING btree ("contact_id") WHERE "campaign_sends"."contact_id" is not null;--> statement-breakpoint
CREATE INDEX "campaign_sends_recipient_idx" ON "campaign_sends" USING btree ("recipient_id","campaign_id","step");--> statement-breakpoint
CREATE INDEX "consents_latest_idx" ON "consents" USING btree ("contact_id","workspace_id","at","id");--> statement-breakpoint
CREATE INDEX "message_contacts_contact_idx" ON "message_contacts" USING btree ("contact_id","workspace_id");