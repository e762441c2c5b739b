-- P-13: from a contact's deletion on, hits on mail sent to them are no longer stored (no IP, no
-- user agent), only counted, as for someone who refused tracking (src/tracking/untracked-hits.ts).
-- The event writer's per-hit probe reads this index, which now holds deleted contacts too: the
-- purge takes them away within PURGE_AFTER_DAYS, so it stays small.
DROP INDEX "contacts_tracking_refused_idx";--> statement-breakpoint
CREATE INDEX "contacts_untracked_idx" ON "contacts" USING btree ("workspace_id",lower("email")) WHERE "contacts"."tracking_refused_at" is not null or "contacts"."deleted_at" is not null;