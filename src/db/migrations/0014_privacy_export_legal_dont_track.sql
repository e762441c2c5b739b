-- A recipient's "don't track my opens and clicks" (preference center), workspace-wide on the
-- contact: set = when they asked; null = tracked as usual.
ALTER TABLE "contacts" ADD COLUMN "tracking_refused_at" timestamp with time zone;
--> statement-breakpoint
-- Hits that still arrive for such a recipient (mail sent before they asked) are kept only as
-- a count per campaign and type: no event row, no address, no IP, no user agent.
CREATE TABLE "untracked_hit_counts" (
	"workspace_id" uuid NOT NULL,
	"campaign_id" uuid NOT NULL REFERENCES "campaigns"("id") ON DELETE CASCADE,
	"type" "tracking_event_type" NOT NULL,
	"hits" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "untracked_hit_counts_pk" PRIMARY KEY ("campaign_id", "type", "workspace_id")
);
--> statement-breakpoint
-- P-16: a request from an authority, with the exact scope a disclosure may cover.
CREATE TABLE "legal_requests" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"workspace_id" uuid NOT NULL REFERENCES "workspaces"("id") ON DELETE CASCADE,
	"authority" text NOT NULL,
	"legal_basis" text NOT NULL,
	"reference" text NOT NULL,
	"contact_ids" uuid[] DEFAULT '{}'::uuid[] NOT NULL,
	"addresses" text[] DEFAULT '{}'::text[] NOT NULL,
	"mailbox_ids" uuid[] DEFAULT '{}'::uuid[] NOT NULL,
	"from_at" timestamp with time zone NOT NULL,
	"to_at" timestamp with time zone NOT NULL,
	"data_kinds" text[] NOT NULL,
	"recorded_by" uuid REFERENCES "users"("id") ON DELETE SET NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_disclosed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "legal_requests_workspace_created_idx" ON "legal_requests" USING btree ("workspace_id","created_at");
