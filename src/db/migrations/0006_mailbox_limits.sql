-- Limits shared by every process (invariant 10): one row per mailbox holds its Gmail quota
-- bucket, its sends-per-minute bucket, its daily-budget headroom, any rate-limit pause, and
-- the lease of the one sync that may run for it. Periodic jobs claim their period here.
CREATE TABLE "mailbox_limits" (
	"mailbox_id" uuid PRIMARY KEY NOT NULL REFERENCES "mailboxes"("id") ON DELETE CASCADE,
	"quota_units" double precision NOT NULL,
	"quota_at" timestamp with time zone NOT NULL,
	"send_tokens" double precision NOT NULL,
	"send_at" timestamp with time zone NOT NULL,
	"budget_left" integer,
	"budget_counted_at" timestamp with time zone,
	"paused_until" timestamp with time zone,
	"sync_owner" text,
	"sync_lease_until" timestamp with time zone,
	"sync_started_at" timestamp with time zone,
	"sync_requested_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "job_schedule" (
	"name" text PRIMARY KEY NOT NULL,
	"next_run_at" timestamp with time zone NOT NULL,
	"last_owner" text,
	"last_started_at" timestamp with time zone,
	"run_count" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
-- Takes `units` of a mailbox's quota (and, for a send, one send of its pace and one of its
-- daily budget) in one locked step, or says how long to wait. One round trip per Gmail call.
-- p_now is for tests with a virtual clock; in service the database clock is the one clock
-- every process shares.
CREATE FUNCTION "mailbox_take_units"(
	p_mailbox uuid, p_units double precision, p_send boolean,
	p_units_per_minute double precision, p_burst_units double precision, p_sends_per_minute double precision,
	p_budget_recount_ms double precision, p_now timestamptz
) RETURNS TABLE (outcome text, wait_ms double precision)
LANGUAGE plpgsql AS $$
DECLARE
	r mailbox_limits%ROWTYPE;
	t timestamptz := coalesce(p_now, clock_timestamp());
	-- Refill rate leaves room for the burst: burst + a minute of refill never exceeds a minute's quota.
	quota_rate double precision := (p_units_per_minute - p_burst_units) / 60000.0;
	send_rate double precision := p_sends_per_minute / 60000.0;
	quota double precision;
	sends double precision;
	quota_wait double precision := 0;
	send_wait double precision := 0;
	budget integer;
	used integer;
BEGIN
	SELECT * INTO r FROM mailbox_limits WHERE mailbox_id = p_mailbox FOR UPDATE;
	IF NOT FOUND THEN
		-- A new bucket starts with the burst only, never a full minute: other processes share it.
		INSERT INTO mailbox_limits (mailbox_id, quota_units, quota_at, send_tokens, send_at)
			SELECT id, p_burst_units, t, 1, t FROM mailboxes WHERE id = p_mailbox
			ON CONFLICT (mailbox_id) DO NOTHING;
		SELECT * INTO r FROM mailbox_limits WHERE mailbox_id = p_mailbox FOR UPDATE;
		IF NOT FOUND THEN
			RETURN QUERY SELECT 'unknown_mailbox'::text, 0::double precision;
			RETURN;
		END IF;
	END IF;
	IF r.paused_until IS NOT NULL AND r.paused_until > t THEN
		RETURN QUERY SELECT 'paused'::text, (extract(epoch FROM r.paused_until - t) * 1000)::double precision;
		RETURN;
	END IF;
	quota := least(p_burst_units, r.quota_units + greatest(0, extract(epoch FROM t - r.quota_at) * 1000) * quota_rate);
	IF quota < p_units THEN
		quota_wait := greatest(0, extract(epoch FROM r.quota_at - t) * 1000) + (p_units - quota) / quota_rate;
	END IF;
	IF p_send THEN
		sends := least(1, r.send_tokens + greatest(0, extract(epoch FROM t - r.send_at) * 1000) * send_rate);
		IF sends < 1 THEN
			send_wait := greatest(0, extract(epoch FROM r.send_at - t) * 1000) + (1 - sends) / send_rate;
		END IF;
	END IF;
	IF quota_wait > 0 OR send_wait > 0 THEN
		RETURN QUERY SELECT 'wait'::text, greatest(quota_wait, send_wait)::double precision;
		RETURN;
	END IF;
	IF p_send THEN
		IF coalesce(r.budget_left, 0) > 0 THEN
			r.budget_left := r.budget_left - 1;
		ELSIF r.budget_counted_at IS NOT NULL AND r.budget_counted_at > t - p_budget_recount_ms * interval '1 millisecond' THEN
			-- Headroom ran out since the last count: count again a little later, not on every call.
			RETURN QUERY SELECT 'wait'::text, (extract(epoch FROM r.budget_counted_at + p_budget_recount_ms * interval '1 millisecond' - t) * 1000)::double precision;
			RETURN;
		ELSE
			-- Gmail's daily limit is a rolling 24 h. The send being paced is already `sending`, so
			-- it is counted here; every other claimed or sent one is too, so the headroom errs low.
			SELECT daily_budget INTO budget FROM mailboxes WHERE id = p_mailbox;
			SELECT count(*)::int INTO used FROM (
				SELECT 1 FROM messages
				WHERE mailbox_id = p_mailbox AND direction = 'outbound' AND status IN ('sending', 'sent') AND at >= t - interval '24 hours'
				LIMIT budget + 1
			) counted;
			r.budget_counted_at := t;
			IF used > budget THEN
				r.budget_left := 0;
				UPDATE mailbox_limits SET budget_left = 0, budget_counted_at = t WHERE mailbox_id = p_mailbox;
				RETURN QUERY SELECT 'budget_exhausted'::text, 0::double precision;
				RETURN;
			END IF;
			r.budget_left := budget - used;
		END IF;
		r.send_tokens := sends - 1;
		r.send_at := greatest(t, r.send_at);
	END IF;
	UPDATE mailbox_limits SET
		quota_units = quota - p_units,
		quota_at = greatest(t, r.quota_at),
		send_tokens = r.send_tokens,
		send_at = r.send_at,
		budget_left = r.budget_left,
		budget_counted_at = r.budget_counted_at
	WHERE mailbox_id = p_mailbox;
	RETURN QUERY SELECT 'granted'::text, 0::double precision;
END;
$$;
