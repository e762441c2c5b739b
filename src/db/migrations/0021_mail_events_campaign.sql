-- Issue #14. A campaign's bounces and replies without reading the workspace's whole mail history.
--
-- The stats' mail-event count joined every mail event of the workspace to the campaign's sends:
-- at 1,000,000 mail events in a workspace it read them all on each stats read (~300 ms, server).
-- Each mail event now carries the campaign and the recipient of the send that produced its
-- message, filled in by a trigger when the row is written (whoever writes it; sync.repo.ts is the
-- service's one writer): a campaign send's message row is created
-- in the statement that links it to the send, so the link exists before any reply or bounce can
-- refer to it, and a message is never linked to a send later. The stats count distinct
-- recipients over the campaign's own mail events through one index, with no join to its sends
-- (a join of 10,000 events probing the sends took ~100 ms at load 12). No foreign keys, like the
-- tracking rollups: the privacy purge deletes a recipient's mail events with its messages
-- (purge.repo.ts), and a key would make every recipient or campaign delete scan this table.
ALTER TABLE "mail_events" ADD COLUMN "campaign_id" uuid;
--> statement-breakpoint
ALTER TABLE "mail_events" ADD COLUMN "recipient_id" uuid;
--> statement-breakpoint
CREATE FUNCTION "mail_events_of_campaign_send"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW."campaign_id" IS NULL THEN
		SELECT s."campaign_id", s."recipient_id" INTO NEW."campaign_id", NEW."recipient_id"
		FROM "campaign_sends" s
		WHERE s."message_id" = NEW."message_id" AND s."workspace_id" = NEW."workspace_id"
		LIMIT 1;
	END IF;
	RETURN NEW;
END $$;
--> statement-breakpoint
CREATE TRIGGER "mail_events_of_campaign_send" BEFORE INSERT ON "mail_events"
FOR EACH ROW EXECUTE FUNCTION "mail_events_of_campaign_send"();
--> statement-breakpoint
UPDATE "mail_events" m SET "campaign_id" = s."campaign_id", "recipient_id" = s."recipient_id"
FROM "campaign_sends" s
WHERE s."message_id" = m."message_id" AND s."workspace_id" = m."workspace_id";
--> statement-breakpoint
CREATE INDEX "mail_events_campaign_idx" ON "mail_events" USING btree ("workspace_id", "campaign_id", "type", "recipient_id") WHERE "campaign_id" IS NOT NULL;
