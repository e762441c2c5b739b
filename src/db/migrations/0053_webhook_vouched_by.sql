-- Hardening: a webhook endpoint sends the workspace's data to a URL a member chose, and it kept
-- doing so after that member was removed or left (an attacker's finding). `vouched_by` is the
-- member who answers for it — whoever set its URL or last turned it on — and a removal turns off
-- the endpoints its member vouches for (auth.service.ts removeMembership). Existing endpoints are
-- their creators'. A small table: the backfill and the foreign key are quick.
ALTER TABLE "webhook_endpoints" ADD COLUMN IF NOT EXISTS "vouched_by" uuid;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" DROP CONSTRAINT IF EXISTS "webhook_endpoints_vouched_by_users_id_fk";--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_vouched_by_users_id_fk" FOREIGN KEY ("vouched_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
UPDATE "webhook_endpoints" SET "vouched_by" = "created_by" WHERE "vouched_by" IS NULL;
