import { z } from 'zod';
import { encryptionKeyList, optionalUrl, signingSecretList } from './parsers.js';

/**
 * Every environment variable the service reads, with its rule and default. `.env.example` lists
 * every name (config.test.ts checks it), the README's configuration table the ones most often set;
 * src/config.ts maps the parsed values to `Config`.
 */

/** AUTO_REPLY_FOLLOW_UP_DELAY_DAYS when unset (also the send ledger's when not told: send-ledger.repo.ts createSendLedgerRepo). */
export const DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS = 3;

/**
 * Gmail's own daily sending limit per kind of account (Google Workspace; consumer Gmail). No
 * budget may exceed it: a higher one is refused (`PATCH /api/mailboxes/:id`), and one stored before
 * that refusal is counted at the limit — by migration 0059's `mailbox_gmail_daily_limit`, which
 * holds the same numbers (daily-budget-gmail-limit.test.ts checks they agree).
 */
export const GMAIL_DAILY_SEND_LIMITS = { workspace: 2_000, consumer: 500 } as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('0.0.0.0'),
  PUBLIC_BASE_URL: optionalUrl,
  DATA_DIR: z.string().default('./data'),
  DATABASE_URL: z
    .string()
    .regex(/^(pglite:.+|postgres(ql)?:\/\/.+)$/, 'must be pglite:<dir> or postgres://…')
    .optional(),
  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  JWT_PRIVATE_KEY: z.string().includes('PRIVATE KEY', { message: 'must be a PEM private key' }).optional(),
  JWT_PUBLIC_KEY: z.string().includes('PUBLIC KEY', { message: 'must be a PEM public key' }).optional(),
  JWT_TTL_SECONDS: z.coerce.number().int().min(60).max(86_400).default(3600),
  TOKEN_ENCRYPTION_KEYS: encryptionKeyList.optional(),
  TOKEN_ENCRYPTION_ACTIVE_VERSION: z.string().optional(),
  TRACKING_SECRET: signingSecretList.optional(),
  GOOGLE_CLIENT_ID: z.string().optional(),
  GOOGLE_CLIENT_SECRET: z.string().optional(),
  GOOGLE_REDIRECT_URI: optionalUrl,
  GOOGLE_API_ROOT_URL: optionalUrl,
  GOOGLE_OAUTH_AUTHORIZE_URL: optionalUrl,
  GOOGLE_OAUTH_TOKEN_URL: optionalUrl,
  GOOGLE_OAUTH_REVOKE_URL: optionalUrl,
  GMAIL_PUSH_AUDIENCE: z.string().optional(),
  GMAIL_PUSH_SERVICE_ACCOUNT: z.email().optional(),
  GMAIL_PUSH_TOPIC: z.string().regex(/^projects\/[^/]+\/topics\/[^/]+$/, 'must be projects/<project>/topics/<topic>').optional(),
  GOOGLE_CERTS_URL: optionalUrl,
  GMAIL_DAILY_BUDGET_WORKSPACE: z.coerce.number().int().min(1).max(GMAIL_DAILY_SEND_LIMITS.workspace).default(GMAIL_DAILY_SEND_LIMITS.workspace),
  GMAIL_DAILY_BUDGET_CONSUMER: z.coerce.number().int().min(1).max(GMAIL_DAILY_SEND_LIMITS.consumer).default(GMAIL_DAILY_SEND_LIMITS.consumer),
  GMAIL_SYNC_POLL_SECONDS: z.coerce.number().int().min(0).default(300),
  GMAIL_RESYNC_MAX_MESSAGES: z.coerce.number().int().min(1).max(1_000_000).default(50_000),
  BOUNCE_SOFT_LIMIT: z.coerce.number().int().min(1).max(100).default(3),
  BOUNCE_SOFT_WINDOW_DAYS: z.coerce.number().int().min(1).max(365).default(30),
  BOUNCE_MATCH_WINDOW_DAYS: z.coerce.number().int().min(1).max(60).default(7),
  AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: z.coerce.number().int().min(0).max(60).default(DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS),
  GMAIL_SENDS_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(60),
  GMAIL_QUOTA_UNITS_PER_MINUTE: z.coerce.number().int().min(100).max(1_000_000_000).default(15_000),
  ROLE: z.enum(['all', 'web', 'worker'], { message: 'must be all, web or worker' }).default('all'),
  /** How long one messages.send may take before its outcome counts as unknown (resolved by a mailbox search). */
  GMAIL_SEND_TIMEOUT_SECONDS: z.coerce.number().min(0.1).max(600).default(180),
  /** A claimed send's lease: longer than the send timeout, so only a dead worker's lease expires. */
  SEND_LEASE_SECONDS: z.coerce.number().min(0.2).max(3600).default(240),
  /** First mailbox search for a send of unknown outcome; later looks wait 4× longer each time. */
  SEND_RESOLVE_DELAY_SECONDS: z.coerce.number().min(0).max(3600).default(15),
  SANDBOX_PORT: z.coerce.number().int().min(0).max(65535).default(4100),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  /** Which proxies may name the client in X-Forwarded-For. Default: none (a local caller must not pick its own address). */
  TRUST_PROXY: z.string().default('false'),
  POLICY_VERSION: z.string().min(1).default('2026-11-01'),
  LOGIN_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
  LOGIN_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).default(900),
  LOGIN_MAX_ATTEMPTS_PER_ADDRESS: z.coerce.number().int().min(1).default(30),
  LOGIN_ADDRESS_WINDOW_SECONDS: z.coerce.number().int().min(1).default(900),
  SIGNUP_MAX_PER_ADDRESS: z.coerce.number().int().min(1).default(10),
  SIGNUP_WINDOW_SECONDS: z.coerce.number().int().min(1).default(3600),
  /** SMTP for account mail (signup confirmations); unset → written to <DATA_DIR>/outbox.txt. */
  SMTP_URL: z.string().regex(/^smtps?:\/\/.+/, 'must be smtp://… or smtps://…').optional(),
  MAIL_FROM: z.string().min(3).default('inboxtrail <no-reply@localhost>'),
  /** Bearer token for GET /metrics; unset → /metrics answers 404. */
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Apple Mail Privacy Protection egress ranges: a file path or http(s) URL (unset: the shipped sample). */
  APPLE_MPP_RANGES: z.string().min(1).optional(),
  TRACKING_RAW_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  TRACKING_BUFFER_MAX: z.coerce.number().int().min(1000).max(10_000_000).default(500_000),
  /** An uncached click waits at most this long for the database before a 503 (or a redirect from what was cached). */
  TRACKING_CLICK_TIMEOUT_MS: z.coerce.number().int().min(50).max(30_000).default(800),
  DATABASE_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(2_000),
  DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
  /** Days audit rows are kept (a legal period: 2555 = 7 years); the purge job deletes only older rows. */
  AUDIT_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(2555),
  // Deletion, purge and retention (src/privacy/README.md).
  /** HMAC-SHA256 key of the suppression list's address hashes (an opt-out outlives the contact). */
  SUPPRESSION_HASH_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
  /** P-13: a deleted item is purged this many days after deletion (at most 30). */
  PURGE_AFTER_DAYS: z.coerce.number().int().min(0).max(30).default(30),
  /** Consent records superseded by a newer one are kept this long (legal proof), then purged. */
  CONSENT_HISTORY_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(2557),
  /** P-15: an account unused (no login, no API call) this many years is purged. */
  INACTIVE_ACCOUNT_PURGE_YEARS: z.coerce.number().min(0.01).max(100).default(7),
  /** The owner of an inactive account is mailed this many days before its purge. */
  INACTIVE_ACCOUNT_WARNING_DAYS: z.coerce.number().int().min(1).max(365).default(30),
  /** Outbound webhooks (src/webhooks/README.md). Private targets: tests and local development only, refused in production. */
  WEBHOOKS_ALLOW_PRIVATE_TARGETS: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false'),
  WEBHOOKS_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  WEBHOOKS_RETRY_BASE_SECONDS: z.coerce.number().min(0.01).max(3600).default(30),
  WEBHOOKS_RETRY_WINDOW_HOURS: z.coerce.number().min(0.0001).max(24 * 30).default(72),
  WEBHOOKS_DISABLE_AFTER_FAILURES: z.coerce.number().int().min(1).max(1_000_000).default(50),
  WEBHOOKS_DISABLE_AFTER_HOURS: z.coerce.number().min(0).max(24 * 30).default(72),
  WEBHOOKS_SECRET_GRACE_HOURS: z.coerce.number().min(0).max(24 * 30).default(24),
  /** Every endpoint is one more delivery of each event it subscribes to: a workspace has at most this many. */
  WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE: z.coerce.number().int().min(1).max(1000).default(20),
  // At most 30, like PURGE_AFTER_DAYS: an event's payload names a contact's address, and a
  // deleted contact's address must be gone within 30 days (P-13).
  WEBHOOKS_EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(30).default(30),
  /** How long a browser session of the web app lasts from sign-in. */
  WEB_SESSION_TTL_HOURS: z.coerce.number().min(0.01).max(24 * 30).default(12),
});

export type Env = z.infer<typeof envSchema>;
