-- No daily budget counts above Gmail's own sending limit (2,000 a day for a Google Workspace
-- account, 500 for consumer Gmail; config/schema.ts GMAIL_DAILY_SEND_LIMITS holds the same
-- numbers). Since 0055 the account's budget is the highest set on any live record of the address,
-- and PATCH /api/mailboxes/:id accepted up to 10,000: an admin of any workspace the address was
-- connected in could raise the account's ceiling past what Gmail allows, for every workspace. The
-- API now refuses such a budget; one stored before is read here at the limit, where every count of
-- a budget reads it (mailbox_take_units, mailbox_budget_left), so no row needs rewriting.
-- Functions only: no table changes.
CREATE OR REPLACE FUNCTION "mailbox_gmail_daily_limit"(p_kind mailbox_kind) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE p_kind WHEN 'consumer' THEN 500 ELSE 2000 END;
$$;
--> statement-breakpoint
-- 0055's version, each record's budget read at most at its kind's limit.
CREATE OR REPLACE FUNCTION "mailbox_account_budget"(p_mailbox uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT max(least(o.daily_budget, mailbox_gmail_daily_limit(o.kind))) FROM mailboxes m
	JOIN mailboxes o ON lower(o.email) = lower(m.email) AND (o.deleted_at IS NULL OR o.id = m.id)
	WHERE m.id = p_mailbox;
$$;
--> statement-breakpoint
-- 0055's version, each record's budget read at most at its kind's limit.
CREATE OR REPLACE FUNCTION "mailbox_workspace_budget"(p_mailbox uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT min(least(o.daily_budget, mailbox_gmail_daily_limit(o.kind))) FROM mailboxes m
	JOIN mailboxes o ON lower(o.email) = lower(m.email) AND o.workspace_id = m.workspace_id AND (o.deleted_at IS NULL OR o.id = m.id)
	WHERE m.id = p_mailbox;
$$;
