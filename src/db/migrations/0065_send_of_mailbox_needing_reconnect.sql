-- A new send of a mailbox that needs reconnecting is refused at once ('needs_reconnect'), taking
-- nothing, as 0064 refuses one of a disconnected mailbox. Google refusing the grant marks the
-- mailbox needs_reconnect and resets the address's daily headroom (the pacer's `forget`), whose
-- recount waits until the last grant is p_claim_grace_ms old (10 s): a send of it waiting in the
-- pacer sat out that grace, was granted (quota, a pace slot, a unit of the address's budget), and
-- only the send gate refused it. Not refused, as in 0064: a claimed send's retry (p_counted) and
-- reads. 0064's version, with the check extended.
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
	w mailbox_budget_workspaces%ROWTYPE;
	addr text;
	ws uuid;
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
	own integer;
	account_full boolean;
	own_full boolean;
	refusal text;
BEGIN
	-- A disconnected record (deleted, not yet purged), or one whose grant Google refused: its new
	-- sends leave before anything is locked or taken. A change committing after this is met by
	-- the send gate, as before.
	IF p_send AND NOT p_counted THEN
		SELECT CASE WHEN deleted_at IS NOT NULL THEN 'unknown_mailbox' WHEN status <> 'active' THEN 'needs_reconnect' END
			INTO refusal FROM mailboxes WHERE id = p_mailbox;
		IF refusal IS NOT NULL THEN
			RETURN QUERY SELECT refusal, 0::double precision, 0;
			RETURN;
		END IF;
	END IF;
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
		-- The address's row, then this workspace's row of it, locked after the record's (every
		-- writer takes them in this order).
		SELECT lower(email), workspace_id INTO addr, ws FROM mailboxes WHERE id = p_mailbox;
		SELECT * INTO a FROM mailbox_budget_accounts WHERE address = addr FOR UPDATE;
		IF NOT FOUND THEN
			INSERT INTO mailbox_budget_accounts (address) VALUES (addr) ON CONFLICT (address) DO NOTHING;
			SELECT * INTO a FROM mailbox_budget_accounts WHERE address = addr FOR UPDATE;
		END IF;
		SELECT * INTO w FROM mailbox_budget_workspaces WHERE address = addr AND workspace_id = ws FOR UPDATE;
		IF NOT FOUND THEN
			INSERT INTO mailbox_budget_workspaces (address, workspace_id) VALUES (addr, ws) ON CONFLICT DO NOTHING;
			SELECT * INTO w FROM mailbox_budget_workspaces WHERE address = addr AND workspace_id = ws FOR UPDATE;
		END IF;
		-- Read at each grant: a budget changed, or a record connected or disconnected, applies at
		-- once (the used counts do not depend on it).
		budget := mailbox_account_budget(p_mailbox);
		own := mailbox_workspace_budget(p_mailbox);
		account_full := a.budget_used IS NULL OR a.budget_used >= budget;
		own_full := w.budget_used IS NULL OR w.budget_used >= own;
		IF account_full OR own_full THEN
			-- A headroom ran out (or was never counted): count it again, once the last grant it
			-- counts is old enough to be a row — the account's, any record's; the workspace's, its
			-- own records' only (0055 waited for the account's: another workspace sending once a
			-- second kept a workspace's first send waiting for as long as it went on) — and not
			-- more often than p_budget_recount_ms.
			recount_at := t;
			IF account_full THEN
				recount_at := greatest(recount_at,
					coalesce(a.budget_granted_at + p_claim_grace_ms * interval '1 millisecond', t),
					coalesce(a.budget_counted_at + p_budget_recount_ms * interval '1 millisecond', t));
			END IF;
			IF own_full THEN
				recount_at := greatest(recount_at,
					coalesce(w.budget_granted_at + p_claim_grace_ms * interval '1 millisecond', t),
					coalesce(w.budget_counted_at + p_budget_recount_ms * interval '1 millisecond', t));
			END IF;
			IF recount_at > t THEN
				RETURN QUERY SELECT 'wait'::text, (extract(epoch FROM recount_at - t) * 1000)::double precision, 0;
				RETURN;
			END IF;
			-- Gmail's daily limit is a rolling 24 h. Every send granted to any record of the address
			-- is a `sending` or `sent` row by now (or `failed/outcome_unknown`), or was purged since
			-- and counted in mailbox_purged_sends; the ones asking now are not.
			IF account_full THEN
				a.budget_used := mailbox_address_sends(p_mailbox, t - interval '24 hours', budget, false);
				a.budget_counted_at := t;
			END IF;
			IF own_full THEN
				w.budget_used := mailbox_address_sends(p_mailbox, t - interval '24 hours', own, true);
				w.budget_counted_at := t;
			END IF;
			IF a.budget_used >= budget OR w.budget_used >= own THEN
				UPDATE mailbox_budget_accounts SET budget_used = a.budget_used, budget_counted_at = a.budget_counted_at WHERE address = addr;
				UPDATE mailbox_budget_workspaces SET budget_used = w.budget_used, budget_counted_at = w.budget_counted_at
					WHERE address = addr AND workspace_id = ws;
				RETURN QUERY SELECT 'budget_exhausted'::text, 0::double precision, 0;
				RETURN;
			END IF;
		END IF;
		n := least(n, budget - a.budget_used, own - w.budget_used);
		UPDATE mailbox_budget_accounts SET
			budget_used = a.budget_used + n,
			budget_counted_at = a.budget_counted_at,
			budget_granted_at = t
		WHERE address = addr;
		UPDATE mailbox_budget_workspaces SET
			budget_used = w.budget_used + n,
			budget_counted_at = w.budget_counted_at,
			budget_granted_at = t
		WHERE address = addr AND workspace_id = ws;
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
