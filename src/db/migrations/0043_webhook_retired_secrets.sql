-- Webhook signing secrets in their grace period, as a list (src/webhooks/README.md, "Signing"):
-- one column pair held only the secret before the last rotation, so a second rotation inside
-- the grace period stopped the first secret from signing at once, before the time it was given.
-- A secret still in grace moves into the list. The old columns stay for one release: the
-- release before this one reads them (its delivery workers, during a rolling deploy), and this
-- one still writes the newest replaced secret there for them; a later release drops them.
ALTER TABLE "webhook_endpoints" ADD COLUMN "retired_secrets" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
UPDATE "webhook_endpoints" SET "retired_secrets" = jsonb_build_array(jsonb_build_object(
  'ciphertext', "previous_secret_ciphertext",
  'expiresAt', to_char("previous_secret_expires_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
WHERE "previous_secret_ciphertext" IS NOT NULL AND "previous_secret_expires_at" > now();
