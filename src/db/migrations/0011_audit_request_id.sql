-- Each audit row names the request that caused it, so evidence ties back to the request log.
ALTER TABLE "audit_log" ADD COLUMN "request_id" text;
