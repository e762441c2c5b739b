-- The event writer's per-hit check (src/tracking/untracked-hits.ts) also asks whether the send's
-- own contact refused tracking: after its address changed, the send's address no longer finds it
-- in contacts_untracked_idx. Same partial condition, so this index stays as small (usually empty).
CREATE INDEX "contacts_untracked_id_idx" ON "contacts" USING btree ("workspace_id","id") WHERE "contacts"."tracking_refused_at" is not null or "contacts"."deleted_at" is not null;