-- Issue #14. A campaign's bounces and replies without reading the workspace's whole mail history.
--
-- The stats' mail-event count joined every mail event of the workspace to the campaign's sends:
-- at 1,000,000 mail events in a workspace it read them all on each stats read (~300 ms, server).
-- Each mail event now carries the campaign whose send produced its message, set when the event is
-- written (sync.repo.ts): a campaign send's message row is created in the statement that links
-- it to the send, so the link exists before any reply or bounce can refer to it, and a message
-- is never linked to a send later. The stats keep their join on message_id (a send whose message
-- was unlinked, by a skip or a retry, still drops out); the column only narrows the rows read.
ALTER TABLE "mail_events" ADD COLUMN "campaign_id" uuid CONSTRAINT "mail_events_campaign_id_campaigns_id_fk" REFERENCES "campaigns"("id") ON DELETE SET NULL;
--> statement-breakpoint
UPDATE "mail_events" m SET "campaign_id" = s."campaign_id"
FROM "campaign_sends" s
WHERE s."message_id" = m."message_id" AND s."workspace_id" = m."workspace_id";
--> statement-breakpoint
CREATE INDEX "mail_events_campaign_idx" ON "mail_events" USING btree ("workspace_id", "campaign_id", "type") WHERE "campaign_id" IS NOT NULL;
