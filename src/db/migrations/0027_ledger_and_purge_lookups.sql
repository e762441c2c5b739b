-- Issue #14, seventh pass: lookups that read a whole table per row at 100k
-- (BENCHMARKS.md, "Later-step claim checks at 100k" and "Query plans at 100k: the audit").
--
-- 1. The ledger's unique key, (campaign, step, recipient), becomes (recipient, campaign, step):
--    the same rows are unique. A later step's send claim checks whether an earlier step was
--    answered or bounced (send-ledger.repo.ts: `p.campaign_id = s.campaign_id and
--    p.recipient_id = s.recipient_id and p.step < s.step`), and an automatic reply defers the
--    recipient's later steps (follow-ups.repo.ts). With the step before the recipient,
--    PostgreSQL 15 read every earlier-step entry of the campaign for each message (1,336–2,909
--    pages per check at 100,000 recipients, two checks per claimed message). Led by the
--    recipient, each is one descent, and the foreign key's reference check when a recipient row
--    is deleted (a purge, once per row) probes too. Lookups by campaign alone keep
--    campaign_sends_campaign_status_due_idx. The new key is built before the old one is dropped,
--    so uniqueness is never unenforced.
-- 2. Deleting a contact runs the foreign keys' own lookups once per deleted row:
--    `campaign_sends.contact_id` (set null), `consents.contact_id` and
--    `message_contacts.contact_id` (cascade). None had an index led by that column, so a purge of
--    a closed workspace of 330 contacts beside one of 100,000 read 137M tuples (19 s). The
--    consents' and timeline links' indexes get the contact first (every other lookup names both
--    columns: no extra index to write); the ledger gets its contacts' sends.
-- 3. The suppression list's pages (newest first) get an index in their order instead of a sort
--    of the workspace's whole list.
--
-- Written to run on any database this session's main reached: one that applied an earlier draft
-- of these indexes (two migrations, 0027 and 0028, folded into this one before they were
-- released) gets the same end state (IF [NOT] EXISTS, and a journal `when` later than theirs).
--
-- Each index is built while the table is locked against writes (plain CREATE INDEX, inside the
-- migration's transaction): on a large existing ledger, run the migration in a quiet window.
CREATE UNIQUE INDEX IF NOT EXISTS "campaign_sends_recipient_campaign_step_unique" ON "campaign_sends" USING btree ("recipient_id","campaign_id","step","workspace_id");--> statement-breakpoint
DROP INDEX IF EXISTS "campaign_sends_campaign_step_recipient_unique";--> statement-breakpoint
DROP INDEX IF EXISTS "campaign_sends_campaign_recipient_step_unique";--> statement-breakpoint
DROP INDEX IF EXISTS "campaign_sends_recipient_idx";--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "campaign_sends_contact_idx" ON "campaign_sends" USING btree ("contact_id") WHERE "campaign_sends"."contact_id" is not null;--> statement-breakpoint
DROP INDEX IF EXISTS "consents_latest_idx";--> statement-breakpoint
CREATE INDEX "consents_latest_idx" ON "consents" USING btree ("contact_id","workspace_id","at","id");--> statement-breakpoint
DROP INDEX IF EXISTS "message_contacts_contact_idx";--> statement-breakpoint
CREATE INDEX "message_contacts_contact_idx" ON "message_contacts" USING btree ("contact_id","workspace_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "suppressions_workspace_created_idx" ON "suppressions" USING btree ("workspace_id","created_at","id");
