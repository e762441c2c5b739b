-- Issue 14: the tracking event writer checks, in its one write statement, whether each hit's
-- send went to a contact who refused tracking (src/tracking/untracked-hits.ts). Only those
-- contacts are in this index, so the probe reads an index that is usually empty, whatever
-- the number of contacts (the unique index on lower(email) is partial on deleted_at and
-- holds every contact).
CREATE INDEX "contacts_tracking_refused_idx" ON "contacts" USING btree ("workspace_id", lower("email")) WHERE "tracking_refused_at" IS NOT NULL;
