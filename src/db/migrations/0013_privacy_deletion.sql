-- P-13 soft delete: a deleted contact, campaign, mailbox, user or workspace is hidden at once and purged after purge_after.
ALTER TABLE "contacts" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "contacts" ADD COLUMN "purge_after" timestamp with time zone;--> statement-breakpoint
-- HMAC-SHA256 of the normalized address (suppression/address-hash.ts), written by the app: how a hashed opt-out still matches.
ALTER TABLE "contacts" ADD COLUMN "address_hash" text;--> statement-breakpoint
-- A deleted contact's address may be used again by a new contact at once.
DROP INDEX "contacts_workspace_email_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "contacts_workspace_email_unique" ON "contacts" USING btree ("workspace_id",lower("email")) WHERE "contacts"."deleted_at" is null;--> statement-breakpoint
CREATE INDEX "contacts_purge_after_idx" ON "contacts" USING btree ("purge_after") WHERE "contacts"."purge_after" is not null;--> statement-breakpoint
ALTER TABLE "recipients" ADD COLUMN "address_hash" text;--> statement-breakpoint
-- A purged contact's opt-out keeps only the keyed hash: the address itself is cleared.
ALTER TABLE "suppressions" ALTER COLUMN "email" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "suppressions" ADD COLUMN "address_hash" text;--> statement-breakpoint
CREATE UNIQUE INDEX "suppressions_workspace_hash_scope_unique" ON "suppressions" USING btree ("workspace_id","address_hash","scope");--> statement-breakpoint
ALTER TABLE "campaigns" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "campaigns" ADD COLUMN "purge_after" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "campaigns_purge_after_idx" ON "campaigns" USING btree ("purge_after") WHERE "campaigns"."purge_after" is not null;--> statement-breakpoint
ALTER TABLE "mailboxes" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "mailboxes" ADD COLUMN "purge_after" timestamp with time zone;--> statement-breakpoint
DROP INDEX "mailboxes_workspace_email_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "mailboxes_workspace_email_unique" ON "mailboxes" USING btree ("workspace_id",lower("email")) WHERE "mailboxes"."deleted_at" is null;--> statement-breakpoint
CREATE INDEX "mailboxes_purge_after_idx" ON "mailboxes" USING btree ("purge_after") WHERE "mailboxes"."purge_after" is not null;--> statement-breakpoint
-- Account closure and P-15: sessions issued before sessions_not_before are refused; last_active_at drives the inactivity purge.
ALTER TABLE "users" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "purge_after" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "sessions_not_before" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "last_active_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "inactivity_warned_at" timestamp with time zone;--> statement-breakpoint
DROP INDEX "users_email_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "users_email_unique" ON "users" USING btree ("email") WHERE "users"."deleted_at" is null;--> statement-breakpoint
CREATE INDEX "users_last_active_at_idx" ON "users" USING btree ("last_active_at") WHERE "users"."deleted_at" is null;--> statement-breakpoint
ALTER TABLE "workspaces" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workspaces" ADD COLUMN "purge_after" timestamp with time zone;
