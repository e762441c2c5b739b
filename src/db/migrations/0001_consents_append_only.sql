-- Consent history is evidence (P-11, P-18): rows are added, never edited.
CREATE OR REPLACE FUNCTION refuse_consent_update() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'consents are append-only';
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER consents_append_only BEFORE UPDATE ON consents
  FOR EACH ROW EXECUTE FUNCTION refuse_consent_update();
