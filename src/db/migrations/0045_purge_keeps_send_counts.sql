-- P-13 "per-campaign totals stay": a contact's purge deletes their sends, and the ledger's delete
-- trigger took them off the campaign's counters, so "sent" fell while the opens, clicks and
-- unsubscribes they had counted stayed (a campaign of two with one purged read sent 1, opened 1:
-- the other recipient seemed to have opened). The purge now sets this transaction-local flag
-- around its delete (privacy/purge.repo.ts), and deletes under it leave the outcomes (sent,
-- failed, skipped) counted; a send still queued or sending is taken off, so a campaign's
-- progress still ends. Every other delete (a campaign's own, a draft's recipients) counts as before.
CREATE OR REPLACE FUNCTION "campaign_send_counts_apply"() RETURNS trigger LANGUAGE plpgsql AS $$
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
			-- Under the purge's flag an outcome stays counted; a send still to do does not.
			AND (current_setting('inboxtrail.keep_send_counts', true) IS DISTINCT FROM 'on' OR d."status" IN ('queued', 'sending'))
		GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4
		ON CONFLICT ("campaign_id", "status", "skip_reason", "slot", "workspace_id") DO UPDATE SET "n" = t."n" + excluded."n";
	END IF;
	RETURN NULL;
END $$;
