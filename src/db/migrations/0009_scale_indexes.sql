-- The latest consent of a contact is the last entry of (workspace, contact) in this index: the
-- tie-break on id is part of the key, so neither the send claim nor preflight needs a sort.
-- It replaces consents_contact_at_idx, a prefix of it.
CREATE INDEX IF NOT EXISTS "consents_latest_idx" ON "consents" USING btree ("workspace_id","contact_id","at","id");--> statement-breakpoint
DROP INDEX IF EXISTS "consents_contact_at_idx";
