-- A process serving POST /api/messages with an Idempotency-Key that died before claiming its send
-- left the key `in_progress` with no message: every retry was a bare 409 for 24 hours, and the
-- mail could never be sent with that key. `lease_expires_at` is the liveness of such a request
-- until its claim links a message (a timer renews it; the link clears it): expired and unlinked,
-- the request is gone and sent nothing, and a retry takes the key over (src/idempotency/README.md).
-- Nullable and without a default: adding it rewrites no row, and a row without one is never taken over.
ALTER TABLE "idempotency_keys" ADD COLUMN IF NOT EXISTS "lease_expires_at" timestamp with time zone;
