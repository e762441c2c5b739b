-- Issue #14: what the last rollup pass added to a recipient's human events. The pass's
-- upsert returns it beside the new count, so that a count leaving 0 (one more unique human) or
-- coming back to 0 (one less) is seen without joining the pass's input back to what it wrote:
-- that join's sorts were a third of the write statement on PGlite. A constant default: no
-- table rewrite.
ALTER TABLE "tracking_recipient_rollups" ADD COLUMN "last_delta" integer DEFAULT 0 NOT NULL;
