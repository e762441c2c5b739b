-- A password change ends the user's other sessions by a per-user counter instead of a time
-- (src/auth/README.md, "A new password ends every other session"). users.session_version rises by
-- one in the transaction that stores the new hash; a bearer token carries the version it was
-- issued at (claim `sv`), a web_sessions row the version it started at, and either is refused once
-- they differ. A time cut-off (sessions_not_before) could not close a login that read the old
-- hash before the change and signed after it, a web sign-in that inserted its row after the
-- change, or instances with skewed clocks. Default 0: every existing token (no `sv`, read as 0)
-- and row keeps working until the user's next password change. Adding a column with a constant
-- default does not rewrite the table.
ALTER TABLE "users" ADD COLUMN "session_version" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "web_sessions" ADD COLUMN "session_version" integer DEFAULT 0 NOT NULL;