-- The account page's code step shows only while a login-address change is pending (src/web/README.md,
-- "Account"): when the new address was last asked for, cleared when the change is confirmed. The
-- code mailed to the new address is a signed token and stays the only proof; this column keeps no
-- address and no code. Nullable, no default: adding it does not rewrite the table.
ALTER TABLE "users" ADD COLUMN "email_change_requested_at" timestamp with time zone;
