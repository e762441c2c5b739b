-- Consent records in the order they were written: of two records at the same time (an import's
-- date-only values are all midnight), the later written is the contact's latest. The random id
-- broke such ties by chance, so a later opt-out could lose to an earlier opt-in (P-10, P-11).
-- Existing rows are numbered in the table's physical order, which is about the order they were
-- written in. The latest-record index ends in seq instead of id.
DROP INDEX "consents_latest_idx";--> statement-breakpoint
ALTER TABLE "consents" ADD COLUMN "seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY (sequence name "consents_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
CREATE INDEX "consents_latest_idx" ON "consents" USING btree ("contact_id","workspace_id","at","seq");