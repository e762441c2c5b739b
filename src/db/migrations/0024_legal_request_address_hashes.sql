-- P-13 with P-16. A legal request names people by address in its scope; when such a person's
-- contact is purged, the address leaves the request (purge.repo.ts) and its keyed hash (the
-- HMAC of suppression/address-hash.ts, the same one a purged suppression keeps) takes its place
-- here, so the record still proves exactly which scope was asked for without holding the address.
ALTER TABLE "legal_requests" ADD COLUMN "erased_address_hashes" text[] DEFAULT '{}'::text[] NOT NULL;
