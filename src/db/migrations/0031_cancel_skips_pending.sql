-- Issue #14: a cancel no longer skips every queued send of the campaign in its own transaction
-- (one statement over all of them: 26-48 us a row on a server, 52-108 us on PGlite, where it held
-- the one database thread 5-11 s at 98,000 queued, and past ~200,000 it would reach the 10 s
-- statement_timeout). It moves the campaign's state and sets this mark; the queued sends are
-- then skipped in short batches (src/campaigns/cancelled-sends.ts), the first ones before the
-- answer, the rest by the worker's sweep, which also finishes a cancel cut short by a crash. The
-- sweep finds its work through this partial index: only campaigns still being skipped are in
-- it, so the question costs the same however many campaigns were ever cancelled.
ALTER TABLE "campaigns" ADD COLUMN "skipping_queued_since" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "campaigns_skipping_queued_idx" ON "campaigns" USING btree ("skipping_queued_since") WHERE "campaigns"."skipping_queued_since" is not null;--> statement-breakpoint
-- A cancelled campaign that still has sends queued or in flight (a send in flight when it was
-- cancelled queues its next step when it is recorded): the sweep takes it over. From the counters.
UPDATE "campaigns" c SET "skipping_queued_since" = now()
WHERE c."status" = 'cancelled'
  AND coalesce((SELECT sum(n) FROM "campaign_send_counts" WHERE "campaign_id" = c."id" AND "status" IN ('queued', 'sending')), 0) > 0;
