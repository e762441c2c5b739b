-- Which steps' mail holds each tracked link. The "every link at once" rule (tracking/classify.ts
-- burstThreshold) needs min(links in the mail, 3) distinct links hit within a second; it counted
-- the links of every step of a sequence, so a scanner following both links of a two-link mail in a
-- sequence of such mails was never a burst (an attacker's finding). Rows written before this keep
-- null, read as "in every step" (the old count): their step cannot be told from the URL alone.
-- Numbered 0057: 0056 may be another change's.
ALTER TABLE "campaign_links" ADD COLUMN IF NOT EXISTS "steps" integer[];
