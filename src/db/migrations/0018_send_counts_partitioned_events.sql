-- Issue #14. Two changes that keep reads flat as sends and events grow.
--
-- 1. Per-campaign send counters, kept by statement-level triggers on the send ledger: every
--    statement that inserts, changes the state of, or deletes ledger rows adds its net
--    change here in the same statement, so the counters commit or roll back with the ledger
--    change itself (a crash, kill -9 or a second worker cannot make them drift). Progress and
--    stats read a few counter rows instead of counting the campaign's sends.
--    `slot` spreads concurrent writers over rows (pg_backend_pid() % 32): two workers sending
--    the same campaign rarely wait for each other's counter row; readers sum the slots.
--    `skip_reason` is '' except for skipped sends (so "skipped because" is a counter read too).
CREATE TABLE "campaign_send_counts" (
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL CONSTRAINT "campaign_send_counts_campaign_id_campaigns_id_fk" REFERENCES "campaigns"("id") ON DELETE CASCADE,
	"status" "send_status" NOT NULL,
	"skip_reason" text DEFAULT '' NOT NULL,
	"slot" smallint NOT NULL,
	"n" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "campaign_send_counts_pk" PRIMARY KEY ("campaign_id", "status", "skip_reason", "slot", "workspace_id")
);
--> statement-breakpoint
-- Net changes (+1 per new row, -1 per old row) grouped by key, applied in key order so two
-- statements of the same slot never lock counter rows in opposite orders. A campaign that is
-- being deleted (its sends go by cascade) is skipped: its counters go with it.
CREATE FUNCTION "campaign_send_counts_apply"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO "campaign_send_counts" AS t ("workspace_id", "campaign_id", "status", "skip_reason", "slot", "n")
		SELECT "workspace_id", "campaign_id", "status", coalesce("skip_reason", ''), (pg_backend_pid() % 32)::smallint, count(*)
		FROM new_sends GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4
		ON CONFLICT ("campaign_id", "status", "skip_reason", "slot", "workspace_id") DO UPDATE SET "n" = t."n" + excluded."n";
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO "campaign_send_counts" AS t ("workspace_id", "campaign_id", "status", "skip_reason", "slot", "n")
		SELECT d."workspace_id", d."campaign_id", d."status", d."skip_reason", (pg_backend_pid() % 32)::smallint, sum(d."n")
		FROM (
			SELECT "workspace_id", "campaign_id", "status", coalesce("skip_reason", '') AS "skip_reason", 1 AS "n" FROM new_sends
			UNION ALL
			SELECT "workspace_id", "campaign_id", "status", coalesce("skip_reason", ''), -1 FROM old_sends
		) d
		WHERE EXISTS (SELECT 1 FROM "campaigns" c WHERE c."id" = d."campaign_id")
		GROUP BY 1, 2, 3, 4 HAVING sum(d."n") <> 0 ORDER BY 2, 3, 4
		ON CONFLICT ("campaign_id", "status", "skip_reason", "slot", "workspace_id") DO UPDATE SET "n" = t."n" + excluded."n";
	ELSE
		INSERT INTO "campaign_send_counts" AS t ("workspace_id", "campaign_id", "status", "skip_reason", "slot", "n")
		SELECT d."workspace_id", d."campaign_id", d."status", coalesce(d."skip_reason", ''), (pg_backend_pid() % 32)::smallint, -count(*)
		FROM old_sends d
		WHERE EXISTS (SELECT 1 FROM "campaigns" c WHERE c."id" = d."campaign_id")
		GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4
		ON CONFLICT ("campaign_id", "status", "skip_reason", "slot", "workspace_id") DO UPDATE SET "n" = t."n" + excluded."n";
	END IF;
	RETURN NULL;
END $$;
--> statement-breakpoint
-- One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
CREATE TRIGGER "campaign_send_counts_on_insert" AFTER INSERT ON "campaign_sends"
	REFERENCING NEW TABLE AS new_sends FOR EACH STATEMENT EXECUTE FUNCTION "campaign_send_counts_apply"();
--> statement-breakpoint
CREATE TRIGGER "campaign_send_counts_on_update" AFTER UPDATE ON "campaign_sends"
	REFERENCING OLD TABLE AS old_sends NEW TABLE AS new_sends FOR EACH STATEMENT EXECUTE FUNCTION "campaign_send_counts_apply"();
--> statement-breakpoint
CREATE TRIGGER "campaign_send_counts_on_delete" AFTER DELETE ON "campaign_sends"
	REFERENCING OLD TABLE AS old_sends FOR EACH STATEMENT EXECUTE FUNCTION "campaign_send_counts_apply"();
--> statement-breakpoint
INSERT INTO "campaign_send_counts" ("workspace_id", "campaign_id", "status", "skip_reason", "slot", "n")
SELECT "workspace_id", "campaign_id", "status", coalesce("skip_reason", ''), 0, count(*) FROM "campaign_sends" GROUP BY 1, 2, 3, 4;
--> statement-breakpoint
-- The campaign's next due send: the first entry of (campaign, queued) in due order, not a
-- scan of its queued sends. Replaces the (campaign_id, status) index it extends.
CREATE INDEX "campaign_sends_campaign_status_due_idx" ON "campaign_sends" USING btree ("campaign_id", "status", "due_at");
--> statement-breakpoint
DROP INDEX "campaign_sends_campaign_status_idx";
--> statement-breakpoint
-- A campaign's mail events (bounces, replies: stats) are found from the message they concern;
-- without this, each stats read with any mail event hashes all the campaign's sends, and each
-- deleted message (disconnect) scans the ledger for its foreign key. Partial: launch writes
-- sends without a message, so it pays nothing.
CREATE INDEX "campaign_sends_message_idx" ON "campaign_sends" USING btree ("message_id") WHERE "message_id" IS NOT NULL;
--> statement-breakpoint
-- The stats' unsubscribe count (source `campaign:<id>`): a probe of this campaign's opt-outs,
-- not a scan of the workspace's whole suppression list (which can hold a million addresses).
CREATE INDEX "suppressions_unsubscribe_source_idx" ON "suppressions" USING btree ("workspace_id", "source") WHERE "reason" = 'unsubscribe';
--> statement-breakpoint
-- 2. tracking_events partitioned by month of `at` (UTC), with a default partition so an
--    event outside every monthly partition is still stored. The primary key includes the
--    partition key: (id, at), both fixed when the hit is buffered, so a retried batch still
--    inserts nothing twice (`on conflict (id, at) do nothing`). Drizzle does not model
--    partitioning: src/db/schema/tracking.ts declares the parent table only (columns,
--    key, indexes); `drizzle-kit generate` diffs that against its snapshots, never the
--    database, so it neither sees nor undoes the partitions (src/tracking/README.md).
ALTER TABLE "tracking_events" RENAME TO "tracking_events_unpartitioned";
--> statement-breakpoint
ALTER TABLE "tracking_events_unpartitioned" DROP CONSTRAINT "tracking_events_pkey";
--> statement-breakpoint
DROP INDEX "tracking_events_campaign_idx";
--> statement-breakpoint
DROP INDEX "tracking_events_send_idx";
--> statement-breakpoint
DROP INDEX "tracking_events_raw_facts_at_idx";
--> statement-breakpoint
-- LIKE keeps every column (and its default) the table has by now, whichever migration added it.
CREATE TABLE "tracking_events" (
	LIKE "tracking_events_unpartitioned" INCLUDING DEFAULTS,
	CONSTRAINT "tracking_events_id_at_pk" PRIMARY KEY ("id", "at")
) PARTITION BY RANGE ("at");
--> statement-breakpoint
CREATE INDEX "tracking_events_campaign_idx" ON "tracking_events" USING btree ("campaign_id", "type", "at");
--> statement-breakpoint
CREATE INDEX "tracking_events_send_idx" ON "tracking_events" USING btree ("send_id", "at");
--> statement-breakpoint
-- The P-14 sweep reads only events that still hold raw facts, and only the months past the
-- window (partition pruning on `at`).
CREATE INDEX "tracking_events_raw_facts_at_idx" ON "tracking_events" USING btree ("at") WHERE "user_agent" IS NOT NULL OR ("ip" IS NOT NULL AND position('/' in "ip") = 0);
--> statement-breakpoint
CREATE TABLE "tracking_events_default" PARTITION OF "tracking_events" DEFAULT;
--> statement-breakpoint
-- Creates the partition of the month (UTC) holding p_at unless it exists: built as a plain
-- table, filled with that month's rows from the default partition (moved, not copied), then
-- attached — the lighter lock (inserts into other months go on meanwhile). Serialized by an
-- advisory lock: two processes may ask at once. Returns true when it created the partition.
CREATE FUNCTION "tracking_events_ensure_partition"(p_at timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	month_start timestamp := date_trunc('month', p_at AT TIME ZONE 'UTC');
	lo timestamptz := month_start AT TIME ZONE 'UTC';
	hi timestamptz := (month_start + interval '1 month') AT TIME ZONE 'UTC';
	part text := 'tracking_events_p' || to_char(month_start, 'YYYY_MM');
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('tracking_events_partitions'));
	IF to_regclass(part) IS NOT NULL THEN
		RETURN false;
	END IF;
	EXECUTE format('CREATE TABLE %I (LIKE "tracking_events" INCLUDING DEFAULTS)', part);
	EXECUTE format('WITH moved AS (DELETE FROM "tracking_events_default" WHERE "at" >= $1 AND "at" < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
	EXECUTE format('ALTER TABLE "tracking_events" ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
	RETURN true;
END $$;
--> statement-breakpoint
-- The months from p_from's month on, p_months of them: what the scheduled job keeps ahead.
CREATE FUNCTION "tracking_events_ensure_partitions"(p_from timestamptz, p_months integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	first_month timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
	created integer := 0;
BEGIN
	FOR i IN 0 .. p_months - 1 LOOP
		IF "tracking_events_ensure_partition"((first_month + make_interval(months => i)) AT TIME ZONE 'UTC') THEN
			created := created + 1;
		END IF;
	END LOOP;
	RETURN created;
END $$;
--> statement-breakpoint
SELECT "tracking_events_ensure_partition"(m) FROM (SELECT DISTINCT date_trunc('month', "at" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m FROM "tracking_events_unpartitioned") months;
--> statement-breakpoint
SELECT "tracking_events_ensure_partitions"(now(), 3);
--> statement-breakpoint
INSERT INTO "tracking_events" SELECT * FROM "tracking_events_unpartitioned";
--> statement-breakpoint
DROP TABLE "tracking_events_unpartitioned";
