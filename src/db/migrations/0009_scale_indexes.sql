-- The latest consent of a contact is the last entry of (workspace, contact) in this index: the
-- tie-break on id is part of the key, so neither the send claim nor preflight needs a sort.
-- It replaces consents_contact_at_idx, a prefix of it.
CREATE INDEX IF NOT EXISTS "consents_latest_idx" ON "consents" USING btree ("workspace_id","contact_id","at","id");--> statement-breakpoint
DROP INDEX IF EXISTS "consents_contact_at_idx";
--> statement-breakpoint
-- Citus-ready keys (docs/SCALING.md): every tenant table carries workspace_id and every primary or
-- unique key includes it (or a random UUID), so each can be distributed by workspace. Appending
-- workspace_id changes no uniqueness (the leading columns already belong to one workspace) and keeps
-- every lookup by the leading columns on the same index.
ALTER TABLE "campaign_links" ADD COLUMN "workspace_id" uuid;--> statement-breakpoint
UPDATE "campaign_links" l SET "workspace_id" = c."workspace_id" FROM "campaigns" c WHERE c."id" = l."campaign_id";--> statement-breakpoint
ALTER TABLE "campaign_links" ALTER COLUMN "workspace_id" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "campaign_links" ADD CONSTRAINT "campaign_links_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "campaign_links" DROP CONSTRAINT "campaign_links_campaign_id_link_index_pk";--> statement-breakpoint
ALTER TABLE "campaign_links" ADD CONSTRAINT "campaign_links_campaign_id_link_index_workspace_id_pk" PRIMARY KEY("campaign_id","link_index","workspace_id");--> statement-breakpoint
ALTER TABLE "message_contacts" DROP CONSTRAINT "message_contacts_message_id_contact_id_pk";--> statement-breakpoint
ALTER TABLE "message_contacts" ADD CONSTRAINT "message_contacts_message_id_contact_id_workspace_id_pk" PRIMARY KEY("message_id","contact_id","workspace_id");--> statement-breakpoint
DROP INDEX "mail_events_source_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "mail_events_source_unique" ON "mail_events" USING btree ("message_id","type","source_gmail_message_id","workspace_id");--> statement-breakpoint
DROP INDEX "messages_mailbox_gmail_id_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_mailbox_gmail_id_unique" ON "messages" USING btree ("mailbox_id","gmail_message_id","workspace_id");--> statement-breakpoint
DROP INDEX "campaign_sends_campaign_step_recipient_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "campaign_sends_campaign_step_recipient_unique" ON "campaign_sends" USING btree ("campaign_id","step","recipient_id","workspace_id");
