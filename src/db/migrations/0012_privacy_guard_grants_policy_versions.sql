-- Issue 11 (privacy guard): access grants to Gmail content, an audit log that refuses DELETE
-- except for its own retention purge, and the published policy versions (P-18).
CREATE TABLE "gmail_access_grants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL,
	"message_id" uuid NOT NULL,
	"granted_by" uuid NOT NULL,
	"grantee_user_id" uuid NOT NULL,
	"reason" text,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "gmail_access_grants" ADD CONSTRAINT "gmail_access_grants_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "gmail_access_grants" ADD CONSTRAINT "gmail_access_grants_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "gmail_access_grants" ADD CONSTRAINT "gmail_access_grants_granted_by_users_id_fk" FOREIGN KEY ("granted_by") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "gmail_access_grants" ADD CONSTRAINT "gmail_access_grants_grantee_user_id_users_id_fk" FOREIGN KEY ("grantee_user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "gmail_access_grants_grantee_idx" ON "gmail_access_grants" USING btree ("workspace_id","grantee_user_id","message_id");--> statement-breakpoint
CREATE INDEX "gmail_access_grants_granted_by_idx" ON "gmail_access_grants" USING btree ("workspace_id","granted_by","created_at");--> statement-breakpoint
CREATE TABLE "policy_versions" (
	"version" text PRIMARY KEY NOT NULL,
	"disclosure" jsonb NOT NULL,
	"published_by" text NOT NULL,
	"published_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);
--> statement-breakpoint
-- A published policy is a fact like an audit row: never edited, never removed.
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER policy_versions_append_only BEFORE UPDATE OR DELETE ON policy_versions
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
--> statement-breakpoint
CREATE TRIGGER policy_versions_no_truncate BEFORE TRUNCATE ON policy_versions
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
--> statement-breakpoint
-- Audit rows leave only through the retention purge: a transaction that set
-- inboxtrail.audit_purge_before (SET LOCAL) may delete rows older than that instant, and
-- nothing else may delete any row.
CREATE OR REPLACE FUNCTION audit_log_guard_delete() RETURNS trigger AS $$
DECLARE
  purge_before text := current_setting('inboxtrail.audit_purge_before', true);
BEGIN
  IF purge_before IS NULL OR purge_before = '' THEN
    RAISE EXCEPTION 'audit_log is append-only: rows are removed only by the retention purge';
  END IF;
  IF OLD.at >= purge_before::timestamptz THEN
    RAISE EXCEPTION 'audit_log row is within its retention period';
  END IF;
  RETURN OLD;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER audit_log_delete_only_by_purge BEFORE DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_guard_delete();
--> statement-breakpoint
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
--> statement-breakpoint
-- The retention purge and the compliance report read by time across or within workspaces.
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_log_workspace_action_at_idx" ON "audit_log" USING btree ("workspace_id","action","at");
