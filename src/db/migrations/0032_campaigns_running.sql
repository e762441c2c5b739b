-- Issue #14: the send worker asks every tick, in every worker process, which campaigns it may
-- serve (sending, or scheduled and due) and which paused ones wait for a reconnected mailbox.
-- Both read the whole campaigns table, which keeps every campaign every workspace ever sent. This
-- partial index holds only the campaigns not yet finished, so each question reads a few pages
-- whatever the table's size (test/integration/campaign-tick-plan.test.ts).
CREATE INDEX "campaigns_running_idx" ON "campaigns" USING btree ("status","start_at") WHERE "campaigns"."status" in ('scheduled', 'sending', 'paused');