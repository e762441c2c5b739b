-- Webhook claims take fair shares per workspace (webhooks.repo.ts claimDue): each enabled
-- endpoint's earliest due deliveries, one probe of this index each. Ordering every due row by
-- time let one workspace's backlog behind a slow receiver hold up every other workspace's events.
CREATE INDEX IF NOT EXISTS "webhook_deliveries_endpoint_due_idx" ON "webhook_deliveries" USING btree ("endpoint_id","next_attempt_at") WHERE "webhook_deliveries"."status" = 'pending';
