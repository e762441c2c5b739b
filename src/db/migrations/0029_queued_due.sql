-- A batch's reservation (send-ledger.repo.ts reserveDue) takes a campaign's earliest due queued
-- rows, ties by id, 500 at a time. A launch gives every row the same due_at, and the index
-- (campaign_id, status, due_at) does not hold the id: each reservation read and sorted all of the
-- campaign's queued rows to keep the first batch (EXPLAIN: 140 ms at 100,000 queued on the server,
-- an external sort; BENCHMARKS.md, "eighth pass"). This index holds the order asked for, so the
-- scan stops after the batch, and a row handed back (a batch stopped by a 429) keeps its place by
-- id instead of going behind the rest of its instant. Partial (queued rows only): a row leaves it
-- when it is claimed, and the later steps' lookups of a recipient's earlier sends, which name no
-- status, cannot choose it over the ledger's key.
CREATE INDEX IF NOT EXISTS "campaign_sends_queued_due_idx" ON "campaign_sends" USING btree ("campaign_id","due_at","id") WHERE "campaign_sends"."status" = 'queued';
