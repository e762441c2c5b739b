-- Every key of workspace data includes workspace_id (schema-tenancy.test.ts: the precondition
-- for distributing by workspace on Citus). The pending rollup records of 0022 were keyed by
-- their identity alone; the pass still claims and deletes them by id (the key's first column).
ALTER TABLE "tracking_rollup_pending" DROP CONSTRAINT "tracking_rollup_pending_pkey";
--> statement-breakpoint
ALTER TABLE "tracking_rollup_pending" ADD CONSTRAINT "tracking_rollup_pending_pk" PRIMARY KEY ("id", "workspace_id");
