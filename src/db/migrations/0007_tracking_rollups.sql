-- Campaign stats read from rollups kept by the tracking event writer, in the same
-- transaction as the events it inserts (src/tracking/rollups.ts tells the rules).
-- link_index -1 is "every link together" (the per-type totals); clicks also get one row per link.
CREATE TABLE "tracking_rollups" (
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL REFERENCES "campaigns"("id") ON DELETE CASCADE,
	"type" "tracking_event_type" NOT NULL,
	"link_index" integer NOT NULL,
	"human" bigint DEFAULT 0 NOT NULL,
	"machine" bigint DEFAULT 0 NOT NULL,
	"unknown" bigint DEFAULT 0 NOT NULL,
	"unique_human" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "tracking_rollups_pk" PRIMARY KEY ("campaign_id", "type", "link_index", "workspace_id")
);
--> statement-breakpoint
-- Judged-human events per recipient: a row going from 0 to more is one more unique human.
-- No foreign keys here or on tracking_send_rollups: the writer inserts them by the hundred
-- per batch and each check would lock the campaign row; tracking_rollups (whose rows the
-- stats read) has one and goes with its campaign.
CREATE TABLE "tracking_recipient_rollups" (
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL,
	"recipient_id" uuid NOT NULL,
	"type" "tracking_event_type" NOT NULL,
	"link_index" integer NOT NULL,
	"human_events" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "tracking_recipient_rollups_pk" PRIMARY KEY ("campaign_id", "recipient_id", "type", "link_index", "workspace_id")
);
--> statement-breakpoint
-- Per send with a human event: what the "a human click upgrades the latest earlier open" rule needs.
CREATE TABLE "tracking_send_rollups" (
	"send_id" uuid NOT NULL,
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL,
	"recipient_id" uuid NOT NULL,
	"first_human_click_at" timestamp with time zone,
	"first_human_open_at" timestamp with time zone,
	"upgraded_class" "hit_classification",
	CONSTRAINT "tracking_send_rollups_pk" PRIMARY KEY ("send_id", "workspace_id")
);
--> statement-breakpoint
-- The P-14 retention sweep looks for events past the window that still hold raw facts:
-- with this partial index it reads only those, not every event ever recorded.
CREATE INDEX "tracking_events_raw_facts_at_idx" ON "tracking_events" USING btree ("at") WHERE "user_agent" IS NOT NULL OR ("ip" IS NOT NULL AND position('/' in "ip") = 0);
--> statement-breakpoint
-- Backfill from the events already stored (same rules as the writer and as the raw recount).
INSERT INTO "tracking_send_rollups" ("send_id", "workspace_id", "campaign_id", "recipient_id", "first_human_click_at", "first_human_open_at")
SELECT s."id", s."workspace_id", s."campaign_id", s."recipient_id",
       min(e."at") FILTER (WHERE e."type" = 'click'),
       min(e."at") FILTER (WHERE e."type" = 'open')
FROM "tracking_events" e JOIN "campaign_sends" s ON s."id" = e."send_id" AND s."workspace_id" = e."workspace_id"
WHERE e."classification" = 'human'
GROUP BY s."id";
--> statement-breakpoint
UPDATE "tracking_send_rollups" r SET "upgraded_class" = c."classification"
FROM (
	SELECT DISTINCT ON (o."send_id") o."send_id", o."classification"
	FROM "tracking_events" o JOIN "tracking_send_rollups" f ON f."send_id" = o."send_id"
	WHERE o."type" = 'open' AND o."classification" <> 'human' AND o."at" <= f."first_human_click_at"
	  AND (f."first_human_open_at" IS NULL OR f."first_human_open_at" > f."first_human_click_at")
	ORDER BY o."send_id", o."at" DESC, o."id" DESC
) c
WHERE c."send_id" = r."send_id";
--> statement-breakpoint
INSERT INTO "tracking_recipient_rollups" ("workspace_id", "campaign_id", "recipient_id", "type", "link_index", "human_events")
SELECT "workspace_id", "campaign_id", "recipient_id", "type", "link_index", sum("n")::int FROM (
	SELECT e."workspace_id", e."campaign_id", s."recipient_id", e."type", -1 AS "link_index", 1 AS "n"
	FROM "tracking_events" e JOIN "campaign_sends" s ON s."id" = e."send_id" AND s."workspace_id" = e."workspace_id"
	WHERE e."classification" = 'human'
	UNION ALL
	SELECT e."workspace_id", e."campaign_id", s."recipient_id", e."type", e."link_index", 1
	FROM "tracking_events" e JOIN "campaign_sends" s ON s."id" = e."send_id" AND s."workspace_id" = e."workspace_id"
	WHERE e."classification" = 'human' AND e."type" = 'click' AND e."link_index" IS NOT NULL
	UNION ALL
	SELECT "workspace_id", "campaign_id", "recipient_id", 'open'::"tracking_event_type", -1, 1
	FROM "tracking_send_rollups" WHERE "upgraded_class" IS NOT NULL
) x
WHERE EXISTS (SELECT 1 FROM "campaigns" c WHERE c."id" = x."campaign_id")
GROUP BY "workspace_id", "campaign_id", "recipient_id", "type", "link_index";
--> statement-breakpoint
INSERT INTO "tracking_rollups" ("workspace_id", "campaign_id", "type", "link_index", "human", "machine", "unknown", "unique_human")
SELECT x."workspace_id", x."campaign_id", x."type", x."link_index", sum(x."human"), sum(x."machine"), sum(x."unknown"),
       coalesce((SELECT count(*) FROM "tracking_recipient_rollups" r
                 WHERE r."campaign_id" = x."campaign_id" AND r."type" = x."type" AND r."link_index" = x."link_index" AND r."human_events" > 0), 0)
FROM (
	SELECT e."workspace_id", e."campaign_id", e."type", g."link_index",
	       (e."classification" = 'human')::int AS "human", (e."classification" = 'machine')::int AS "machine", (e."classification" = 'unknown')::int AS "unknown"
	FROM "tracking_events" e JOIN "campaign_sends" s ON s."id" = e."send_id" AND s."workspace_id" = e."workspace_id"
	CROSS JOIN LATERAL (SELECT -1 AS "link_index" UNION ALL SELECT e."link_index" WHERE e."type" = 'click' AND e."link_index" IS NOT NULL) g
	UNION ALL
	SELECT "workspace_id", "campaign_id", 'open', -1, 1, -("upgraded_class" = 'machine')::int, -("upgraded_class" = 'unknown')::int
	FROM "tracking_send_rollups" WHERE "upgraded_class" IS NOT NULL
) x
WHERE EXISTS (SELECT 1 FROM "campaigns" c WHERE c."id" = x."campaign_id")
GROUP BY x."workspace_id", x."campaign_id", x."type", x."link_index";
