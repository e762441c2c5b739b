ALTER TABLE "signup_requests" ALTER COLUMN "workspace_name" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "signup_requests" ADD COLUMN "invitation_id" uuid;--> statement-breakpoint
ALTER TABLE "signup_requests" ADD CONSTRAINT "signup_requests_invitation_id_invitations_id_fk" FOREIGN KEY ("invitation_id") REFERENCES "public"."invitations"("id") ON DELETE cascade ON UPDATE no action;