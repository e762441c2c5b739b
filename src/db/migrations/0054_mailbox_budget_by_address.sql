-- The daily budget is the Gmail account's, not the mailbox record's (an attacker's finding). It
-- counted messages.mailbox_id and kept its headroom in the record's mailbox_limits row, but one
-- address has several records: a disconnect marks the record deleted and a connect of the same
-- address makes a new one (its budget started from zero minutes after the old one had sent its
-- whole budget), and the same address can be connected in several workspaces at once (each
-- sent a full budget). Gmail's limit is per account, so the account could pass Gmail's own daily
-- limit and be suspended, which is what the budget exists to prevent.
--
-- Now, for the budget, a mailbox is its lower-cased address:
-- * what is used counts the sends of every record of the address, live or disconnected (until
--   purged), in every workspace (mailbox_address_sends);
-- * the budget is the lowest daily_budget among the address's live records (and the asking one);
-- * the headroom lives in one row per address (mailbox_budget_accounts), which mailbox_take_units
--   locks for every new send of any record, after the record's own mailbox_limits row (always in
--   that order), so the grants of all processes and workspaces are taken one at a time.
-- The API's sentToday stays the workspace's own: mailbox_budget_used (3 arguments) now counts the
-- records of the address in the mailbox's workspace only. Another workspace learns nothing of
-- this one's mail from it, only, through a refused send, that the account's budget is used up.
-- The previous release's processes call these functions by the same names: their sends take the
-- new, locked, per-address budget; their "anything left?" check sees the workspace's count.
CREATE TABLE IF NOT EXISTS "mailbox_budget_accounts" (
	"address" text PRIMARY KEY NOT NULL,
	"budget_used" integer,
	"budget_counted_at" timestamp with time zone,
	"budget_granted_at" timestamp with time zone
);
--> statement-breakpoint
-- Every record of an address, in any workspace: the count's and the budget's lookups. Small (one
-- row per connection); on a large server database it can be built CONCURRENTLY first (README, "Upgrades").
CREATE INDEX IF NOT EXISTS "mailboxes_address_idx" ON "mailboxes" USING btree (lower("email"));
--> statement-breakpoint
-- What the budget counts as used since p_since by the address of p_mailbox, stopping at p_at_most
-- (null: no stop): 0026's rule (outbound `sending`/`sent`/`failed` with an unknown outcome, plus
-- purged sends by minute) over every record of the address; p_same_workspace: only the records in
-- p_mailbox's workspace. Counted record by record (LATERAL, each stopping at p_at_most): an index
-- range scan of messages_mailbox_at_idx over each record's window. `mailbox_id = ANY(records)` was
-- planned as a seq scan that stops at p_at_most rows when the records hold most messages (12 ms at
-- 204k on the server, and the whole table when the window's rows are the newest); per record,
-- 1 ms (BENCHMARKS.md, "The budget per Gmail address").
CREATE OR REPLACE FUNCTION "mailbox_address_sends"(p_mailbox uuid, p_since timestamptz, p_at_most integer, p_same_workspace boolean) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
	records uuid[];
	used integer;
BEGIN
	SELECT array_agg(o.id) INTO records
	FROM mailboxes m
	JOIN mailboxes o ON lower(o.email) = lower(m.email) AND (NOT p_same_workspace OR o.workspace_id = m.workspace_id)
	WHERE m.id = p_mailbox;
	IF records IS NULL THEN
		RETURN 0;
	END IF;
	EXECUTE $q$
		SELECT least($3, (
			SELECT coalesce(sum(n), 0)::int FROM unnest($1) AS r(id), LATERAL (
				SELECT count(*) AS n FROM (
					SELECT 1 FROM messages
					WHERE mailbox_id = r.id AND direction = 'outbound' AND at >= $2
						AND (status IN ('sending', 'sent') OR (status = 'failed' AND error_code = 'outcome_unknown'))
					LIMIT $3
				) counted
			) per_record
		) + coalesce((SELECT sum(sends)::int FROM mailbox_purged_sends WHERE mailbox_id = ANY($1) AND minute > $2 - interval '1 minute'), 0))
	$q$ INTO used USING records, p_since, p_at_most;
	RETURN used;
END
$$;
--> statement-breakpoint
-- The API's "sent in the last 24 h" of a mailbox: what its workspace sent from the address (this
-- record and its earlier ones there). Same signature as 0026/0047.
CREATE OR REPLACE FUNCTION "mailbox_budget_used"(p_mailbox uuid, p_since timestamptz, p_at_most integer) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT mailbox_address_sends(p_mailbox, p_since, p_at_most, true);
$$;
--> statement-breakpoint
-- The account's daily budget: the lowest set on any live record of the address (a workspace that
-- lowered it meant it for the account), or on the asking record when it was disconnected meanwhile.
CREATE OR REPLACE FUNCTION "mailbox_account_budget"(p_mailbox uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT min(o.daily_budget) FROM mailboxes m
	JOIN mailboxes o ON lower(o.email) = lower(m.email) AND (o.deleted_at IS NULL OR o.id = m.id)
	WHERE m.id = p_mailbox;
$$;
--> statement-breakpoint
-- How many more sends the account of p_mailbox may make now (the senders' check before they
-- claim; mailbox_take_units decides). 0 for a mailbox that does not exist.
CREATE OR REPLACE FUNCTION "mailbox_budget_left"(p_mailbox uuid, p_since timestamptz) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
	budget integer := mailbox_account_budget(p_mailbox);
BEGIN
	IF budget IS NULL THEN
		RETURN 0;
	END IF;
	RETURN budget - mailbox_address_sends(p_mailbox, p_since, budget, false);
END
$$;
--> statement-breakpoint
-- 0026's version, its budget taken from the address's row. Quota, pace and pauses stay the record's
-- (mailbox_limits): only the budget moved.
CREATE OR REPLACE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz, p_count integer,
	p_counted boolean, p_claim_grace_ms double precision
) RETURNS TABLE (outcome text, wait_ms double precision, granted integer)
LANGUAGE plpgsql AS $$
DECLARE
	r mailbox_limits%ROWTYPE;
	a mailbox_budget_accounts%ROWTYPE;
	addr text;
	t timestamptz := coalesce(p_now, clock_timestamp());
	quota_rate double precision := (p_units_per_minute - p_burst_units) / 60000.0;
	send_rate double precision := p_sends_per_minute / 60000.0;
	quota double precision;
	sends double precision;
	quota_wait double precision := 0;
	send_wait double precision := 0;
	recount_at timestamptz;
	n integer := greatest(1, p_count);
	budget integer;
	used integer;
BEGIN
	SELECT * INTO r FROM mailbox_limits WHERE mailbox_id = p_mailbox FOR UPDATE;
	IF NOT FOUND THEN
		INSERT INTO mailbox_limits (mailbox_id, quota_units, quota_at, send_tokens, send_at)
			SELECT id, p_burst_units, t, 1, t FROM mailboxes WHERE id = p_mailbox
			ON CONFLICT (mailbox_id) DO NOTHING;
		SELECT * INTO r FROM mailbox_limits WHERE mailbox_id = p_mailbox FOR UPDATE;
		IF NOT FOUND THEN
			RETURN QUERY SELECT 'unknown_mailbox'::text, 0::double precision, 0;
			RETURN;
		END IF;
	END IF;
	IF r.paused_until IS NOT NULL AND r.paused_until > t THEN
		RETURN QUERY SELECT 'paused'::text, (extract(epoch FROM r.paused_until - t) * 1000)::double precision, 0;
		RETURN;
	END IF;
	quota := least(p_burst_units, r.quota_units + greatest(0, extract(epoch FROM t - r.quota_at) * 1000) * quota_rate);
	IF quota < p_units THEN
		quota_wait := greatest(0, extract(epoch FROM r.quota_at - t) * 1000) + (p_units - quota) / quota_rate;
	ELSIF p_units > 0 THEN
		n := least(n, floor(quota / p_units)::integer);
	END IF;
	IF p_send THEN
		sends := least(1, r.send_tokens + greatest(0, extract(epoch FROM t - r.send_at) * 1000) * send_rate);
		IF sends < 1 THEN
			send_wait := greatest(0, extract(epoch FROM r.send_at - t) * 1000) + (1 - sends) / send_rate;
		END IF;
	END IF;
	IF quota_wait > 0 OR send_wait > 0 THEN
		RETURN QUERY SELECT 'wait'::text, greatest(quota_wait, send_wait)::double precision, 0;
		RETURN;
	END IF;
	IF p_send AND NOT p_counted THEN
		-- The address's row, locked after the record's (every writer takes them in this order).
		SELECT lower(email) INTO addr FROM mailboxes WHERE id = p_mailbox;
		SELECT * INTO a FROM mailbox_budget_accounts WHERE address = addr FOR UPDATE;
		IF NOT FOUND THEN
			INSERT INTO mailbox_budget_accounts (address) VALUES (addr) ON CONFLICT (address) DO NOTHING;
			SELECT * INTO a FROM mailbox_budget_accounts WHERE address = addr FOR UPDATE;
		END IF;
		-- Read at each grant: a budget lowered in any workspace, or a record connected or
		-- disconnected, applies at once (the used count does not depend on it).
		budget := mailbox_account_budget(p_mailbox);
		IF a.budget_used IS NOT NULL AND a.budget_used < budget THEN
			n := least(n, budget - a.budget_used);
			a.budget_used := a.budget_used + n;
		ELSE
			-- Headroom ran out (or was never counted): count again, once the last grant of any
			-- record is old enough to be a row (and not more often than p_budget_recount_ms).
			recount_at := greatest(
				coalesce(a.budget_counted_at + p_budget_recount_ms * interval '1 millisecond', t),
				coalesce(a.budget_granted_at + p_claim_grace_ms * interval '1 millisecond', t));
			IF recount_at > t THEN
				RETURN QUERY SELECT 'wait'::text, (extract(epoch FROM recount_at - t) * 1000)::double precision, 0;
				RETURN;
			END IF;
			-- Gmail's daily limit is a rolling 24 h. Every send granted to any record of the address
			-- is a `sending` or `sent` row by now (or `failed/outcome_unknown`), or was purged since
			-- and counted in mailbox_purged_sends; the ones asking now are not.
			used := mailbox_address_sends(p_mailbox, t - interval '24 hours', budget, false);
			a.budget_counted_at := t;
			IF used >= budget THEN
				UPDATE mailbox_budget_accounts SET budget_used = used, budget_counted_at = t WHERE address = addr;
				RETURN QUERY SELECT 'budget_exhausted'::text, 0::double precision, 0;
				RETURN;
			END IF;
			n := least(n, budget - used);
			a.budget_used := used + n;
		END IF;
		UPDATE mailbox_budget_accounts SET
			budget_used = a.budget_used,
			budget_counted_at = a.budget_counted_at,
			budget_granted_at = t
		WHERE address = addr;
	END IF;
	IF p_send THEN
		-- A group empties the bucket of one send below zero: the next send waits for all of them.
		r.send_tokens := sends - n;
		r.send_at := greatest(t, r.send_at);
	END IF;
	UPDATE mailbox_limits SET
		quota_units = quota - n * p_units,
		quota_at = greatest(t, r.quota_at),
		send_tokens = r.send_tokens,
		send_at = r.send_at
	WHERE mailbox_id = p_mailbox;
	RETURN QUERY SELECT 'granted'::text, 0::double precision, n;
END;
$$;
--> statement-breakpoint
-- The address's row goes with its last mailbox record (a mailbox's, user's or workspace's purge):
-- nothing is kept about an address no record holds.
CREATE OR REPLACE FUNCTION "mailbox_budget_account_drop"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM mailbox_budget_accounts a
	WHERE a.address = lower(OLD.email) AND NOT EXISTS (SELECT 1 FROM mailboxes m WHERE lower(m.email) = a.address);
	RETURN NULL;
END
$$;
--> statement-breakpoint
DROP TRIGGER IF EXISTS "mailboxes_budget_account_drop" ON "mailboxes";
--> statement-breakpoint
CREATE TRIGGER "mailboxes_budget_account_drop" AFTER DELETE ON "mailboxes" FOR EACH ROW EXECUTE FUNCTION "mailbox_budget_account_drop"();
