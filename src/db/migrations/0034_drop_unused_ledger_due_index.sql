-- campaign_sends_due_idx (status, due_at), from the ledger's first migration, serves no statement:
-- every read of the ledger by state also names the campaign (campaign_sends_campaign_status_due_idx,
-- campaign_sends_queued_due_idx) or reads the `sending` rows (campaign_sends_lease_idx). It cost
-- one more index entry per row at launch and on every state change of a send (the status is in
-- it, so no update is HOT): the claim, the sent record, a skip, a cancel (issue #14, eleventh pass).
DROP INDEX "campaign_sends_due_idx";
