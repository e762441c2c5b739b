-- A deleted campaign never sends, now held by the database: `deleted_at` set means the campaign is
-- not scheduled, sending or paused (src/campaigns/CANCEL-AND-DELETION.md). The code already keeps
-- it — the deletion cancels a running campaign in the transaction that marks it deleted, and every
-- move back to a running state (`transition`) is of live campaigns only — but each of those paths
-- relied on repeating that condition; a constraint fails a path that forgets it instead of letting
-- a hidden campaign mail its audience, with nothing left in any API to stop it.
--
-- The whole table is taken first: the migrator runs in one transaction, and ADD CONSTRAINT needs
-- this lock anyway until the commit, so taking it before the fix below only closes the moment in
-- which a running process could write a row the fix had not seen (and fail the migration).
-- NOT VALID + VALIDATE CONSTRAINT would shorten nothing here: in the one transaction the ACCESS
-- EXCLUSIVE lock of the ADD is held through the validation anyway. The table has one row per
-- campaign (not per send), and the fix reads the running ones by `campaigns_running_idx`.
LOCK TABLE "campaigns" IN ACCESS EXCLUSIVE MODE;--> statement-breakpoint
-- A row that breaks the rule can only come from a bug (no released path writes one), and it is a
-- deleted campaign that would still send: it is cancelled as its deletion would have done —
-- `status_reason` 'deleted', its queued sends left to the worker's sweep to skip
-- (`skipping_queued_since`, cancelled-sends.ts). No webhook event: the campaign is hidden from
-- every API already, and the outbox's rules are the application's, not a migration's to copy.
UPDATE "campaigns"
SET "status" = 'cancelled', "status_reason" = 'deleted', "skipping_queued_since" = coalesce("skipping_queued_since", now()), "updated_at" = now()
WHERE "deleted_at" IS NOT NULL AND "status" IN ('scheduled', 'sending', 'paused');--> statement-breakpoint
ALTER TABLE "campaigns" DROP CONSTRAINT IF EXISTS "campaigns_deleted_not_running";--> statement-breakpoint
ALTER TABLE "campaigns" ADD CONSTRAINT "campaigns_deleted_not_running" CHECK ("campaigns"."deleted_at" is null or "campaigns"."status" not in ('scheduled', 'sending', 'paused'));
