-- A crash of the process serving POST /api/messages with an Idempotency-Key left the key
-- `in_progress` for 24 hours: every retry was told 409 and never learned the message's id.
-- `message_id` links the key to the 1:1 send it claimed, written in the claim's transaction, so a
-- retry answers that message's state once its lease says the first request is gone
-- (src/idempotency/README.md). Nullable and without a default: adding it rewrites no row.
ALTER TABLE "idempotency_keys" ADD COLUMN IF NOT EXISTS "message_id" uuid;--> statement-breakpoint
ALTER TABLE "idempotency_keys" DROP CONSTRAINT IF EXISTS "idempotency_keys_message_id_messages_id_fk";--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "idempotency_keys_message_id_idx" ON "idempotency_keys" USING btree ("message_id");
