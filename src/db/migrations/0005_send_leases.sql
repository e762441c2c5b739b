-- Per-message send leases (issue #8): a row is `sending` only while one worker holds its lease.
ALTER TABLE "campaign_sends" ADD COLUMN "lease_owner" text;--> statement-breakpoint
ALTER TABLE "campaign_sends" ADD COLUMN "lease_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "campaign_sends" ADD COLUMN "resolve_looks" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "lease_owner" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "lease_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "resolve_looks" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "campaign_sends_lease_idx" ON "campaign_sends" USING btree ("lease_expires_at") WHERE "campaign_sends"."status" = 'sending';--> statement-breakpoint
CREATE INDEX "messages_lease_idx" ON "messages" USING btree ("lease_expires_at") WHERE "messages"."status" = 'sending';
