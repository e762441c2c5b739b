-- Issue #14: the campaign-stats rollups leave the tracking event write path. The writer's
-- transaction inserts the events and, in the same statement, one row here per batch and
-- campaign holding what the rollups need of the events actually inserted (compact arrays,
-- not a row per event: that would double the insert's cost). A separate rollup pass
-- (src/tracking/rollups.repo.ts) claims rows oldest first, applies the rules of
-- src/tracking/rollups.ts and deletes them in its own transaction: a row is rolled up
-- exactly once, by whichever process gets to it, including after a crash.
-- No foreign key: a campaign or send deleted meanwhile is skipped by the pass (its sends are
-- gone), and a key checked per batch would lock the campaign row on the write path.
CREATE TABLE "tracking_rollup_pending" (
	"id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL,
	"events" integer NOT NULL,
	"send_ids" uuid[] NOT NULL,
	"at" timestamp with time zone[] NOT NULL,
	"types" "tracking_event_type"[] NOT NULL,
	"link_indexes" integer[] NOT NULL,
	"classifications" "hit_classification"[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- Random uuids do not compress: store the large arrays out of line without trying.
ALTER TABLE "tracking_rollup_pending" ALTER COLUMN "send_ids" SET STORAGE EXTERNAL;
--> statement-breakpoint
ALTER TABLE "tracking_rollup_pending" ALTER COLUMN "at" SET STORAGE EXTERNAL;
