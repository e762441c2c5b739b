-- The daily budget is exact for every sender (it let a mailbox send its budget + 1, and more
-- with several processes). 0006 and 0020 counted the budget on the premise that the send
-- being paced is already `sending` in `messages` when the pacer asks. It is not: both callers
-- (campaign sends, send-worker.ts, and 1:1 mail, messages.service.ts) reach the gate that
-- claims the send (its `sending` row) only after the pacer granted, inside the Gmail call's
-- attempt. So the recount (a) gave the caller one send too many, and (b) missed every other
-- send granted a moment earlier whose claim had not committed yet (the rest of a group,
-- another process) — a recount right after a grant saw too few.
--
-- This version takes two more arguments:
-- * p_counted: the calls already hold their unit of the budget — a retry after a 429 whose
--   claim ran in an earlier attempt (its row is `sending`, and its first grant took the
--   unit). They take quota and pace only: a retry never spends a second unit. The pacer
--   groups counted calls apart from new ones.
-- * p_claim_grace_ms: how long a grant may take to become a `sending` row (token refresh,
--   then the claim). A recount waits until the last grant is that old, so it sees every
--   granted send; the recount happens only when the headroom ran out, i.e. at the budget's
--   end, where waiting costs nothing.
-- New sends are counted as not yet in `messages`: granted only while used + n <= budget.
-- The 9-argument version (0020) and, through it, the 8-argument one (0006) stay for processes
-- of earlier releases during a rolling deploy, as calls of this one for new sends (they
-- claim after the pacer too) with a grace of 10 s; their retries err low by one, never high.
ALTER TABLE "mailbox_limits" ADD COLUMN "budget_granted_at" timestamp with time zone;
--> statement-breakpoint
CREATE FUNCTION "mailbox_take_units"(
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
			-- row by now (or `failed/outcome_unknown`: it may well have gone out, so it counts);
			-- the ones asking now are not.
			SELECT daily_budget INTO budget FROM mailboxes WHERE id = p_mailbox;
			SELECT count(*)::int INTO used FROM (
				SELECT 1 FROM messages
				WHERE mailbox_id = p_mailbox AND direction = 'outbound' AND at >= t - interval '24 hours'
					AND (status IN ('sending', 'sent') OR (status = 'failed' AND error_code = 'outcome_unknown'))
				LIMIT budget
			) counted;
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
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz, p_count integer
) RETURNS TABLE (outcome text, wait_ms double precision, granted integer)
LANGUAGE sql AS $$
	SELECT t.outcome, t.wait_ms, t.granted FROM "mailbox_take_units"(p_mailbox, p_units, p_send, p_units_per_minute, p_burst_units, p_sends_per_minute, p_budget_recount_ms, p_now, p_count, false, 10000) t;
$$;
