-- Throttle subjects are keyed hashes from this release on (src/auth/throttle.ts subjectHasher):
-- rows written before it hold bare SHA-256 hashes of addresses, which anyone with a list of
-- addresses can match (P-13). They count only within their windows (a day at most with the
-- default settings) and no new subject matches them, so they are deleted rather than kept:
-- the limits' open windows start again empty, once, at the upgrade.
DELETE FROM "auth_attempts";
