-- A privacy purge must not give a mailbox more daily budget. The budget counts the mailbox's
-- outbound `messages` of the last 24 h; a contact's or campaign's purge (PURGE_AFTER_DAYS=0, or
-- any purge of mail sent today) deletes such rows, and the recount then saw fewer sends than
-- Gmail did. Now the purge first adds what it deletes to a count per mailbox and minute
-- (mailbox_purged_sends: no address, no content), and the budget counts both.
CREATE TABLE "mailbox_purged_sends" (
	"workspace_id" uuid NOT NULL,
	"mailbox_id" uuid NOT NULL,
	"minute" timestamp with time zone NOT NULL,
	"sends" integer NOT NULL,
	CONSTRAINT "mailbox_purged_sends_pk" PRIMARY KEY("mailbox_id","minute","workspace_id")
);
--> statement-breakpoint
ALTER TABLE "mailbox_purged_sends" ADD CONSTRAINT "mailbox_purged_sends_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mailbox_purged_sends" ADD CONSTRAINT "mailbox_purged_sends_mailbox_id_mailboxes_id_fk" FOREIGN KEY ("mailbox_id") REFERENCES "public"."mailboxes"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
-- What the daily budget counts as used by a mailbox since p_since, stopping at p_at_most (null:
-- no stop): its outbound messages of the window that are or may be out (`sending`, `sent`,
-- `failed` with an unknown outcome), plus the sends purged since. A purged minute counts while
-- any of it is in the window: errs high by less than a minute of purged sends, never low.
-- The one definition: mailbox_take_units' recount and the API's "sent in the last 24 h" use it.
CREATE FUNCTION "mailbox_budget_used"(p_mailbox uuid, p_since timestamptz, p_at_most integer) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT least(p_at_most, (
		SELECT count(*)::int FROM (
			SELECT 1 FROM messages
			WHERE mailbox_id = p_mailbox AND direction = 'outbound' AND at >= p_since
				AND (status IN ('sending', 'sent') OR (status = 'failed' AND error_code = 'outcome_unknown'))
			LIMIT p_at_most
		) counted
	) + coalesce((SELECT sum(sends)::int FROM mailbox_purged_sends WHERE mailbox_id = p_mailbox AND minute > p_since - interval '1 minute'), 0));
$$;
--> statement-breakpoint
-- Called by a purge just before it deletes these messages (same transaction): the ones the
-- budget counts now (same rule as above, last 24 h) are added to their mailbox's minute. A
-- mailbox's minutes older than a day are dropped on the way. Returns how many were added.
CREATE FUNCTION "mailbox_record_purged_sends"(p_messages uuid[]) RETURNS integer
LANGUAGE sql AS $$
	WITH counted AS (
		SELECT workspace_id, mailbox_id, date_trunc('minute', at) AS minute, count(*)::int AS sends FROM messages
		WHERE id = any(p_messages) AND mailbox_id IS NOT NULL AND direction = 'outbound' AND at >= clock_timestamp() - interval '24 hours'
			AND (status IN ('sending', 'sent') OR (status = 'failed' AND error_code = 'outcome_unknown'))
		GROUP BY 1, 2, 3
	),
	dropped AS (
		DELETE FROM mailbox_purged_sends WHERE mailbox_id IN (SELECT mailbox_id FROM counted) AND minute < clock_timestamp() - interval '25 hours'
	),
	added AS (
		INSERT INTO mailbox_purged_sends AS p (workspace_id, mailbox_id, minute, sends)
		SELECT workspace_id, mailbox_id, minute, sends FROM counted ORDER BY mailbox_id, minute
		ON CONFLICT (mailbox_id, minute, workspace_id) DO UPDATE SET sends = p.sends + excluded.sends
	)
	SELECT coalesce(sum(sends), 0)::int FROM counted;
$$;
--> statement-breakpoint
-- 0023's version, its recount through mailbox_budget_used (the 9- and 8-argument versions call it).
CREATE OR REPLACE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz, p_count integer,
	p_counted boolean, p_claim_grace_ms double precision
) RETURNS TABLE (outcome text, wait_ms double precision, granted integer)
LANGUAGE plpgsql AS $$
DECLARE
	r mailbox_limits%ROWTYPE;
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
		IF coalesce(r.budget_left, 0) > 0 THEN
			n := least(n, r.budget_left);
			r.budget_left := r.budget_left - n;
		ELSE
			-- Headroom ran out: count again, once the last grant is old enough to be a row
			-- (and not more often than p_budget_recount_ms).
			recount_at := greatest(
				coalesce(r.budget_counted_at + p_budget_recount_ms * interval '1 millisecond', t),
				coalesce(r.budget_granted_at + p_claim_grace_ms * interval '1 millisecond', t));
			IF recount_at > t THEN
				RETURN QUERY SELECT 'wait'::text, (extract(epoch FROM recount_at - t) * 1000)::double precision, 0;
				RETURN;
			END IF;
			-- Gmail's daily limit is a rolling 24 h. Every send granted is a `sending` or `sent`
			-- row by now (or `failed/outcome_unknown`: it may well have gone out, so it counts),
			-- or was purged since and counted in mailbox_purged_sends; the ones asking now are not.
			SELECT daily_budget INTO budget FROM mailboxes WHERE id = p_mailbox;
			used := mailbox_budget_used(p_mailbox, t - interval '24 hours', budget);
			r.budget_counted_at := t;
			IF used >= budget THEN
				UPDATE mailbox_limits SET budget_left = 0, budget_counted_at = t WHERE mailbox_id = p_mailbox;
				RETURN QUERY SELECT 'budget_exhausted'::text, 0::double precision, 0;
				RETURN;
			END IF;
			n := least(n, budget - used);
			r.budget_left := budget - used - n;
		END IF;
		r.budget_granted_at := t;
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
		send_at = r.send_at,
		budget_left = r.budget_left,
		budget_counted_at = r.budget_counted_at,
		budget_granted_at = r.budget_granted_at
	WHERE mailbox_id = p_mailbox;
	RETURN QUERY SELECT 'granted'::text, 0::double precision, n;
END;
$$;
