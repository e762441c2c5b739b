-- A CRM user's complaint or manual entry over a recipient's own opt-out of the same address and
-- scope: it was answered with the existing entry and kept nowhere, so the recipient's
-- preference page could undo what the user had decided. Nullable, no default: no rewrite.
ALTER TABLE "suppressions" ADD COLUMN "held_reason" "suppression_reason";