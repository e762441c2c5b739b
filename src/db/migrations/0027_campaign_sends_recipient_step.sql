-- Issue #14. The ledger's unique key, (campaign, step, recipient), becomes (campaign, recipient,
-- step): the same rows are unique, and one recipient's steps of a campaign are next to each
-- other in the index.
--
-- A later step's send claim checks whether an earlier step was answered or bounced
-- (send-ledger.repo.ts: `p.campaign_id = s.campaign_id and p.recipient_id = s.recipient_id and
-- p.step < s.step`), and an automatic reply defers the recipient's later steps
-- (follow-ups.repo.ts: `s.step > p.step`). With the step second, the range on the step came
-- before the recipient, and PostgreSQL 15 read every earlier-step entry of the campaign for
-- each message: at 100,000 recipients 1,336–2,909 pages per check, two checks per claimed
-- message (PGlite's PostgreSQL 18 skipped through the step values: a descent per step); an
-- automatic reply's deferral 944–2,734 (BENCHMARKS.md, "Later-step claim checks at 100k").
-- With the recipient second each is one descent. Nothing looks the ledger up by (campaign, step) without the recipient.
-- The index is built first and the old one dropped after, so the key is never unenforced.
CREATE UNIQUE INDEX "campaign_sends_campaign_recipient_step_unique" ON "campaign_sends" USING btree ("campaign_id","recipient_id","step","workspace_id");--> statement-breakpoint
DROP INDEX "campaign_sends_campaign_step_recipient_unique";
