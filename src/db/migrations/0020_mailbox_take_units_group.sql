-- Issue #14. The pacer asks once for a group of calls waiting for the same mailbox, instead
-- of once per call: `mailbox_take_units` with `p_count` grants as many of the p_count calls
-- (each p_units, and for a send one send of the pace and of the daily budget) as fit now —
-- at least one — or says how long to wait, in the same one locked step per mailbox row as
-- before. `granted` says how many. The pacer asks for more than one only when no
-- sends-per-minute pace is configured (a group then goes out at once; with a pace, sends stay
-- spaced one by one). The 8-argument version (migration 0006) stays, for processes of the
-- previous release during a rolling deploy, as a call of this one for one call (the same
-- rules: a group of one is exactly the old step), so the rules live in one function.
CREATE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz, p_count integer
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
	IF p_send THEN
		IF coalesce(r.budget_left, 0) > 0 THEN
			n := least(n, r.budget_left);
			r.budget_left := r.budget_left - n;
		ELSIF r.budget_counted_at IS NOT NULL AND r.budget_counted_at > t - p_budget_recount_ms * interval '1 millisecond' THEN
			RETURN QUERY SELECT 'wait'::text, (extract(epoch FROM r.budget_counted_at + p_budget_recount_ms * interval '1 millisecond' - t) * 1000)::double precision, 0;
			RETURN;
		ELSE
			-- As in migration 0006: the rolling 24 h count, which errs low (the first send of
			-- the group counts as already claimed).
			SELECT daily_budget INTO budget FROM mailboxes WHERE id = p_mailbox;
			SELECT count(*)::int INTO used FROM (
				SELECT 1 FROM messages
				WHERE mailbox_id = p_mailbox AND direction = 'outbound' AND status IN ('sending', 'sent') AND at >= t - interval '24 hours'
				LIMIT budget + 1
			) counted;
			r.budget_counted_at := t;
			IF used > budget THEN
				UPDATE mailbox_limits SET budget_left = 0, budget_counted_at = t WHERE mailbox_id = p_mailbox;
				RETURN QUERY SELECT 'budget_exhausted'::text, 0::double precision, 0;
				RETURN;
			END IF;
			n := least(n, budget - used + 1);
			r.budget_left := budget - used - (n - 1);
		END IF;
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
		budget_counted_at = r.budget_counted_at
	WHERE mailbox_id = p_mailbox;
	RETURN QUERY SELECT 'granted'::text, 0::double precision, n;
END;
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz
) RETURNS TABLE (outcome text, wait_ms double precision)
LANGUAGE sql AS $$
	SELECT t.outcome, t.wait_ms FROM "mailbox_take_units"(p_mailbox, p_units, p_send, p_units_per_minute, p_burst_units, p_sends_per_minute, p_budget_recount_ms, p_now, 1) t;
$$;
