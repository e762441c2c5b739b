-- The webhook events about one person, by contact id and by address, each among the events that
-- carry it. A contact's purge deletes the events about them (privacy/purge.repo.ts) and read the
-- workspace's whole outbox to find them: 36 ms and 2,226 buffers at 100,000 events for each
-- contact purged (plans bench). Written with every outbox row; BENCHMARKS.md (twenty-fifth pass)
-- says what that costs a tracked hit when an endpoint listens. Builds on a large table
-- (`webhook_events`: 30 days of events): README "Upgrades" says how to build it first.
CREATE INDEX IF NOT EXISTS "webhook_events_contact_idx" ON "webhook_events" USING btree ("workspace_id",("data" ->> 'contactId')) WHERE "webhook_events"."data" ? 'contactId';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "webhook_events_email_idx" ON "webhook_events" USING btree ("workspace_id",lower("data" ->> 'email')) WHERE "webhook_events"."data" ? 'email';
