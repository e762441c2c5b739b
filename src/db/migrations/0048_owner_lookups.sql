-- Lookups by the user who did something, and the suppression list's filters (BENCHMARKS.md,
-- twenty-fourth pass). Indexes only; the previous release's queries keep working. As in 0047,
-- they are built inside the migration's transaction, which holds writes to these tables until
-- they are built: on a large server database, build them first, by hand, with CREATE INDEX
-- CONCURRENTLY and the same definitions (README, "Upgrades"); these then do nothing.
--
-- 1. A closed account's purge deletes its users row, and each foreign key naming the user
--    (messages.sent_by, suppressions.created_by, campaigns.created_by: `on delete set null`)
--    then read its whole table, every tenant's rows; the purge also found the workspaces its
--    closure was recorded in with a scan of the whole audit log.
-- 2. A user's own export (P-12) pages through what they sent, created, recorded and did in id
--    order, filtered by user: each part read its whole table, every tenant's rows.
-- 3. The suppression list's pages filtered by reason or topic walked the whole list when few
--    entries matched (a page of a filter nothing matches read every entry). The topic index
--    leaves out 'all': the send gate's suppression probe, which asks for 'all' or a topic,
--    chose an index holding 'all' over the unique address indexes in its generic plan.
CREATE INDEX IF NOT EXISTS "consents_actor_idx" ON "consents" USING btree ("actor","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "messages_sent_by_idx" ON "messages" USING btree ("sent_by","id") WHERE "messages"."sent_by" is not null;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "suppressions_workspace_reason_created_idx" ON "suppressions" USING btree ("workspace_id","reason","created_at","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "suppressions_workspace_topic_created_idx" ON "suppressions" USING btree ("workspace_id","scope","created_at","id") WHERE "suppressions"."scope" <> 'all';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "suppressions_created_by_idx" ON "suppressions" USING btree ("created_by","id") WHERE "suppressions"."created_by" is not null;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "campaigns_created_by_idx" ON "campaigns" USING btree ("created_by","id") WHERE "campaigns"."created_by" is not null;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_log_actor_idx" ON "audit_log" USING btree ("actor","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_log_deletion_requested_idx" ON "audit_log" USING btree ("subject_type","subject_id") WHERE "audit_log"."action" = 'deletion.requested';
