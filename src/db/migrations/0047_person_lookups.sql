-- Lookups that grew with the whole table, found by seeding 200k contacts, 204k messages and 105k
-- audit rows on a PostgreSQL server (BENCHMARKS.md, twenty-third pass). Each is an index or a
-- function body only; the previous release's queries keep working (and keep their old plans).
-- The indexes are built inside the migration's transaction, which holds writes to messages and
-- audit_log until they are built: on a large server database, build them first, by hand, with
-- CREATE INDEX CONCURRENTLY and the same definitions (README, "Upgrades"); these then do nothing.
--
-- 1. Every address a message names, lowercased and bare ("Name <a@b>" -> "a@b"). A contact's
--    purge looked for the messages naming its address with a scan of every message of the
--    workspace (~0.4 s a contact at 204k messages, inside the transaction that holds the
--    address's opt-out lock), and a data subject's export the same way, page by page.
CREATE OR REPLACE FUNCTION "message_bare_addresses"(p_from text, p_to text[], p_cc text[], p_bcc text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT array(
		SELECT coalesce(substring(lower(x) from '<([^<>]*)>$'), lower(x))
		FROM unnest(array[p_from] || p_to || p_cc || p_bcc) AS a(x)
		WHERE x IS NOT NULL)
$$;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "messages_bare_addresses_idx" ON "messages" USING gin (message_bare_addresses("from_address", "to_addresses", "cc_addresses", "bcc_addresses"));--> statement-breakpoint
-- 2. The compliance report finds each deletion request's completion: `subject_id is not distinct
--    from` could not be an index condition, so every request read every later completion (3 s
--    for JSON, 10 s for CSV with 5,000 requests); the report now compares coalesce(subject_id, '').
CREATE INDEX IF NOT EXISTS "audit_log_deletion_completed_idx" ON "audit_log" USING btree ("workspace_id","subject_type",coalesce("subject_id", ''),"at") WHERE "audit_log"."action" = 'deletion.completed';
--> statement-breakpoint
-- 3. The daily budget's count (0026), planned for each call's values. As a SQL function it ran on
--    a generic plan, which for a mailbox holding most of the messages read all of them (31-46 ms
--    a call at 204k, growing with the table); EXECUTE plans the statement with the mailbox and the
--    window it is given, an index range scan of the last 24 h (0.5-1.6 ms). Same signature, same
--    count: mailbox_take_units and the API call it unchanged.
CREATE OR REPLACE FUNCTION "mailbox_budget_used"(p_mailbox uuid, p_since timestamptz, p_at_most integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
	used integer;
BEGIN
	EXECUTE $q$
		SELECT least($3, (
			SELECT count(*)::int FROM (
				SELECT 1 FROM messages
				WHERE mailbox_id = $1 AND direction = 'outbound' AND at >= $2
					AND (status IN ('sending', 'sent') OR (status = 'failed' AND error_code = 'outcome_unknown'))
				LIMIT $3
			) counted
		) + coalesce((SELECT sum(sends)::int FROM mailbox_purged_sends WHERE mailbox_id = $1 AND minute > $2 - interval '1 minute'), 0))
	$q$ INTO used USING p_mailbox, p_since, p_at_most;
	RETURN used;
END
$$;
