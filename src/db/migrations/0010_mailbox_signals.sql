-- Issue 10: replies, automatic replies, bounces and delays are four kinds of mail event.
-- The enum is rebuilt (not ALTER TYPE … ADD VALUE) so that existing rows can be moved to
-- the new values inside this same transaction.
ALTER TYPE "public"."mail_event_type" RENAME TO "mail_event_type_old";--> statement-breakpoint
CREATE TYPE "public"."mail_event_type" AS ENUM('reply', 'auto_reply', 'bounce', 'delay');--> statement-breakpoint
DROP INDEX IF EXISTS "mail_events_source_unique";--> statement-breakpoint
ALTER TABLE "mail_events" ALTER COLUMN "type" SET DATA TYPE "public"."mail_event_type" USING (
  CASE
    WHEN "type"::text = 'reply' AND coalesce(("detail" ->> 'automatic')::boolean, false) THEN 'auto_reply'
    WHEN "type"::text = 'bounce' AND ("detail" ->> 'action') = 'delayed' THEN 'delay'
    ELSE "type"::text
  END
)::"public"."mail_event_type";--> statement-breakpoint
DROP TYPE "public"."mail_event_type_old";--> statement-breakpoint
-- One event per (our message, kind, notice, recipient): a notice naming two recipients of one message records both.
CREATE UNIQUE INDEX "mail_events_source_unique" ON "mail_events" USING btree ("message_id","type","source_gmail_message_id",coalesce("recipient", ''),"workspace_id");--> statement-breakpoint
-- Soft bounces of one address within a window (the soft-bounce suppression policy).
CREATE INDEX "mail_events_recipient_idx" ON "mail_events" USING btree ("workspace_id",lower("recipient"),"type","at");--> statement-breakpoint
-- What sync read and what it skipped, and why (GET /api/mailboxes → sync.health).
ALTER TABLE "mailboxes" ADD COLUMN "sync_health" jsonb DEFAULT '{}'::jsonb NOT NULL;
