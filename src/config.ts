import path from 'node:path';
import { devSecretsFile, loadOrCreateDevSecrets } from './config/dev-secrets.js';
import { emptyAsUndefined } from './config/parsers.js';
import { type Env, envSchema } from './config/schema.js';

/**
 * The service's whole configuration, read from the environment once at boot.
 * Every problem is reported in one error; secret values are never echoed back.
 */

/** What a process runs: `web` serves HTTP (API, tracking, push), `worker` the background jobs (sending, sync, schedules), `all` both. */
export type ProcessRole = 'all' | 'web' | 'worker';

export interface Config {
  readonly env: Env['NODE_ENV'];
  readonly role: ProcessRole;
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string;
  readonly dataDir: string;
  readonly database:
    | { readonly kind: 'pglite'; readonly dir: string }
    | { readonly kind: 'postgres'; readonly url: string; readonly connectTimeoutMs: number; readonly statementTimeoutMs: number };
  readonly jwt:
    | { readonly algorithm: 'HS256'; readonly secret: string; readonly ttlSeconds: number }
    | { readonly algorithm: 'RS256'; readonly privateKey: string; readonly publicKey: string; readonly ttlSeconds: number };
  /** Every configured key; the last one encrypts (TOKEN_ENCRYPTION_ACTIVE_VERSION, else the last listed). */
  readonly tokenEncryptionKeys: readonly { readonly version: string; readonly key: Buffer }[];
  readonly trackingSecrets: readonly { readonly version: string; readonly secret: string }[];
  readonly google: {
    readonly clientId?: string;
    readonly clientSecret?: string;
    readonly redirectUri?: string;
    readonly apiRootUrl?: string;
    readonly authorizeUrl?: string;
    readonly tokenUrl?: string;
    readonly revokeUrl?: string;
    readonly pushAudience?: string;
    readonly certsUrl?: string;
  };
  readonly gmail: {
    readonly dailyBudget: { readonly workspace: number; readonly consumer: number };
    /** The service account Pub/Sub push tokens must name. */
    readonly pushServiceAccount?: string;
    /** Pub/Sub topic that users.watch publishes to; unset → no watch, polling only. */
    readonly pushTopic?: string;
    /** Seconds between polls of each syncing mailbox (the fallback when push is late or off); 0 = off. */
    readonly syncPollSeconds: number;
    /** The most messages a resync (the history id lost) reads since the last sync; beyond, the oldest are not read and the mailbox says so. */
    readonly resyncMaxMessages: number;
    /** Sends per minute per mailbox across every process (Gmail's quota alone would allow 150). */
    readonly sendsPerMinute: number;
    /** Gmail's per-user quota units per minute (15,000); raised only against the sandbox, e.g. for benchmarks. */
    readonly quotaUnitsPerMinute: number;
    /** How long one messages.send may take before its outcome counts as unknown (resolved by a mailbox search). */
    readonly sendTimeoutMs: number;
  };
  /** What bounce notices and automatic replies do (see src/gmail/README.md "Signals"). */
  readonly signals: {
    /** This many soft bounces of one address within `softWindowDays` suppress it. */
    readonly softBounceLimit: number;
    readonly softWindowDays: number;
    /** A notice without the original's Message-ID matches our latest send to that address from that mailbox within this many days. */
    readonly matchWindowDays: number;
    /** An automatic reply pushes that contact's next campaign step back by this many days (0: no change); it never stops the sequence. */
    readonly autoReplyFollowUpDelayDays: number;
  };
  /** The send gate (campaigns/README.md, "Lifecycle of a send"; campaigns/SEND-LEDGER.md). */
  readonly sending: { readonly leaseMs: number; readonly resolveDelayMs: number };
  readonly sandboxPort: number;
  readonly logLevel: Env['LOG_LEVEL'];
  readonly trustProxy: string;
  readonly policyVersion: string;
  readonly login: {
    readonly maxFailures: number;
    readonly windowSeconds: number;
    readonly maxAttemptsPerAddress: number;
    readonly addressWindowSeconds: number;
  };
  readonly signup: { readonly maxPerAddress: number; readonly windowSeconds: number };
  readonly accountMail: { readonly smtpUrl?: string; readonly from: string };
  /** Bearer token that opens GET /metrics; undefined → /metrics is off (404). */
  readonly metricsToken?: string;
  readonly tracking: {
    /** File path or URL of Apple's egress CSV; undefined → the sample shipped in src/tracking/data. */
    readonly appleMppRanges?: string;
    /** P-14: days before the IP and user agent of a tracking hit are truncated. */
    readonly rawRetentionDays: number;
    /** Tracking events buffered in memory at most before the oldest are dropped. */
    readonly bufferMax: number;
    /** How long an uncached click waits for the database before answering 503 (or from a stale cache). */
    readonly clickTimeoutMs: number;
  };
  /** Deletion, purge and retention (src/privacy/README.md). */
  readonly privacy: {
    readonly suppressionHashKey: string;
    readonly purgeAfterDays: number;
    readonly consentHistoryRetentionDays: number;
    readonly inactiveAccountPurgeYears: number;
    readonly inactiveAccountWarningDays: number;
  };
  /** Outbound webhooks (src/webhooks/README.md). */
  readonly webhooks: {
    /** Lets deliveries reach loopback and private addresses: tests only, never in production. */
    readonly allowPrivateTargets: boolean;
    /**
     * Endpoints must be https (in production): payloads carry recipients' addresses and the
     * signature; the README promised an HTTPS endpoint while http:// was accepted everywhere.
     */
    readonly requireHttps: boolean;
    readonly timeoutMs: number;
    /** First retry after about this long, doubling each time (with jitter), until `retryWindowMs` after the event. */
    readonly retryBaseMs: number;
    readonly retryWindowMs: number;
    /** An endpoint is disabled after this many failed attempts in a row spanning at least `disableAfterMs`. */
    readonly disableAfterFailures: number;
    readonly disableAfterMs: number;
    /** After a secret rotation, the old secret signs too for this long. */
    readonly secretGraceMs: number;
    /** Creating more endpoints than this in one workspace is refused (409 `webhook_endpoint_limit`). */
    readonly maxEndpointsPerWorkspace: number;
    /** Events (with their deliveries and log) are deleted this long after they were written, once nothing is pending. */
    readonly eventRetentionMs: number;
  };
  /** Names of secrets generated for development because the environment had none. */
  readonly generatedSecrets: readonly string[];
  /** Issue 11 (privacy guard): how long evidence is kept. */
  readonly audit: { readonly retentionDays: number };
  /** The web app (src/web/): session lifetime; cookies are Secure and `__Host-` in production or when PUBLIC_BASE_URL is https. */
  readonly web: { readonly sessionTtlMs: number };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  // Blank variables (as left by a copied .env.example) mean "not set".
  const raw = Object.fromEntries(Object.entries(source).map(([k, v]) => [k, emptyAsUndefined(v)]));
  const parsed = envSchema.safeParse(raw);
  if (!parsed.success) {
    // Name the variable and the rule, never the value: some of these are secrets.
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  let env = parsed.data;

  const problems: string[] = [];
  const hasKeyPair = Boolean(env.JWT_PRIVATE_KEY || env.JWT_PUBLIC_KEY);
  if (hasKeyPair && !(env.JWT_PRIVATE_KEY && env.JWT_PUBLIC_KEY)) {
    problems.push('JWT_PRIVATE_KEY and JWT_PUBLIC_KEY must be set together');
  }
  const googleSet = [env.GOOGLE_CLIENT_ID, env.GOOGLE_CLIENT_SECRET, env.GOOGLE_REDIRECT_URI].filter(Boolean).length;
  if (googleSet > 0 && googleSet < 3) {
    problems.push('GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI must be set together');
  }

  const generatedSecrets: string[] = [];
  const missingSecrets = [
    !env.JWT_SECRET && !hasKeyPair ? 'JWT_SECRET' : undefined,
    !env.TOKEN_ENCRYPTION_KEYS ? 'TOKEN_ENCRYPTION_KEYS' : undefined,
    !env.TRACKING_SECRET ? 'TRACKING_SECRET' : undefined,
    !env.SUPPRESSION_HASH_KEY ? 'SUPPRESSION_HASH_KEY' : undefined,
  ].filter((name): name is string => Boolean(name));

  if (env.NODE_ENV === 'production') {
    for (const name of missingSecrets) problems.push(`${name}: required when NODE_ENV=production`);
    if (!env.PUBLIC_BASE_URL) problems.push('PUBLIC_BASE_URL: required when NODE_ENV=production');
    // Without a Google client the service runs the built-in sandbox: "sent" mail would reach nobody.
    if (googleSet === 0) problems.push('GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI: required when NODE_ENV=production (without them Gmail is the built-in sandbox and mail reaches nobody)');
    // Without it the webhook would take a push signed for ANY Google service account.
    if ((env.GMAIL_PUSH_TOPIC || env.GMAIL_PUSH_AUDIENCE) && !env.GMAIL_PUSH_SERVICE_ACCOUNT) {
      problems.push('GMAIL_PUSH_SERVICE_ACCOUNT: required when NODE_ENV=production and push is on (GMAIL_PUSH_TOPIC or GMAIL_PUSH_AUDIENCE set)');
    }
  } else if (missingSecrets.length > 0 && problems.length === 0) {
    const stored = loadOrCreateDevSecrets(env.DATA_DIR);
    const filled = envSchema.safeParse({ ...raw, ...Object.fromEntries(missingSecrets.map((n) => [n, stored[n]])) });
    if (!filled.success) throw new ConfigError([`${devSecretsFile(env.DATA_DIR)} is damaged; delete it to regenerate`]);
    env = filled.data;
    generatedSecrets.push(...missingSecrets);
  }
  const activeVersion = env.TOKEN_ENCRYPTION_ACTIVE_VERSION;
  if (activeVersion && env.TOKEN_ENCRYPTION_KEYS && !env.TOKEN_ENCRYPTION_KEYS.some((k) => k.version === activeVersion)) {
    problems.push('TOKEN_ENCRYPTION_ACTIVE_VERSION: must name a version of TOKEN_ENCRYPTION_KEYS');
  }
  if (env.ROLE !== 'all') {
    // Separate web and worker processes share everything through one PostgreSQL server and one Gmail.
    if (!env.DATABASE_URL || env.DATABASE_URL.startsWith('pglite:')) {
      problems.push(`ROLE=${env.ROLE}: needs DATABASE_URL=postgres://… (an embedded PGlite belongs to one process; use ROLE=all)`);
    }
    if (googleSet === 0) {
      problems.push(`ROLE=${env.ROLE}: needs GOOGLE_CLIENT_ID (Google, or one sandbox all processes share: npm run sandbox), not a sandbox per process`);
    }
  }
  if (env.NODE_ENV === 'production' && env.WEBHOOKS_ALLOW_PRIVATE_TARGETS === 'true') {
    problems.push('WEBHOOKS_ALLOW_PRIVATE_TARGETS: must not be true when NODE_ENV=production (webhooks would reach internal addresses)');
  }
  if (env.NODE_ENV === 'production' && env.WEBHOOKS_RETRY_WINDOW_HOURS < 24) {
    problems.push('WEBHOOKS_RETRY_WINDOW_HOURS: must be at least 24 when NODE_ENV=production');
  }
  if (env.SEND_LEASE_SECONDS <= env.GMAIL_SEND_TIMEOUT_SECONDS) {
    problems.push('SEND_LEASE_SECONDS: must be longer than GMAIL_SEND_TIMEOUT_SECONDS (a live send must never look abandoned)');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const database: Config['database'] = !env.DATABASE_URL
    ? { kind: 'pglite', dir: path.join(env.DATA_DIR, 'pglite') }
    : env.DATABASE_URL.startsWith('pglite:')
      ? { kind: 'pglite', dir: env.DATABASE_URL.slice('pglite:'.length) }
      : { kind: 'postgres', url: env.DATABASE_URL, connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS, statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS };

  const jwt: Config['jwt'] =
    env.JWT_PRIVATE_KEY && env.JWT_PUBLIC_KEY
      ? { algorithm: 'RS256', privateKey: env.JWT_PRIVATE_KEY, publicKey: env.JWT_PUBLIC_KEY, ttlSeconds: env.JWT_TTL_SECONDS }
      : { algorithm: 'HS256', secret: env.JWT_SECRET!, ttlSeconds: env.JWT_TTL_SECONDS };

  return deepFreeze({
    env: env.NODE_ENV,
    role: env.ROLE,
    port: env.PORT,
    host: env.HOST,
    publicBaseUrl: (env.PUBLIC_BASE_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, ''),
    dataDir: env.DATA_DIR,
    database,
    jwt,
    // The key that encrypts is the list's last: with TOKEN_ENCRYPTION_ACTIVE_VERSION, that one is moved to the end.
    tokenEncryptionKeys: activeVersion
      ? [...env.TOKEN_ENCRYPTION_KEYS!.filter((k) => k.version !== activeVersion), env.TOKEN_ENCRYPTION_KEYS!.find((k) => k.version === activeVersion)!]
      : env.TOKEN_ENCRYPTION_KEYS!,
    trackingSecrets: env.TRACKING_SECRET!,
    google: {
      clientId: env.GOOGLE_CLIENT_ID,
      clientSecret: env.GOOGLE_CLIENT_SECRET,
      redirectUri: env.GOOGLE_REDIRECT_URI,
      apiRootUrl: env.GOOGLE_API_ROOT_URL,
      authorizeUrl: env.GOOGLE_OAUTH_AUTHORIZE_URL,
      tokenUrl: env.GOOGLE_OAUTH_TOKEN_URL,
      revokeUrl: env.GOOGLE_OAUTH_REVOKE_URL,
      pushAudience: env.GMAIL_PUSH_AUDIENCE,
      certsUrl: env.GOOGLE_CERTS_URL,
    },
    gmail: {
      dailyBudget: { workspace: env.GMAIL_DAILY_BUDGET_WORKSPACE, consumer: env.GMAIL_DAILY_BUDGET_CONSUMER },
      pushServiceAccount: env.GMAIL_PUSH_SERVICE_ACCOUNT,
      pushTopic: env.GMAIL_PUSH_TOPIC,
      syncPollSeconds: env.GMAIL_SYNC_POLL_SECONDS,
      resyncMaxMessages: env.GMAIL_RESYNC_MAX_MESSAGES,
      sendsPerMinute: env.GMAIL_SENDS_PER_MINUTE,
      quotaUnitsPerMinute: env.GMAIL_QUOTA_UNITS_PER_MINUTE,
      sendTimeoutMs: Math.round(env.GMAIL_SEND_TIMEOUT_SECONDS * 1000),
    },
    signals: {
      softBounceLimit: env.BOUNCE_SOFT_LIMIT,
      softWindowDays: env.BOUNCE_SOFT_WINDOW_DAYS,
      matchWindowDays: env.BOUNCE_MATCH_WINDOW_DAYS,
      autoReplyFollowUpDelayDays: env.AUTO_REPLY_FOLLOW_UP_DELAY_DAYS,
    },
    sending: { leaseMs: Math.round(env.SEND_LEASE_SECONDS * 1000), resolveDelayMs: Math.round(env.SEND_RESOLVE_DELAY_SECONDS * 1000) },
    sandboxPort: env.SANDBOX_PORT,
    logLevel: env.LOG_LEVEL,
    trustProxy: env.TRUST_PROXY,
    policyVersion: env.POLICY_VERSION,
    login: {
      maxFailures: env.LOGIN_MAX_FAILURES,
      windowSeconds: env.LOGIN_FAILURE_WINDOW_SECONDS,
      maxAttemptsPerAddress: env.LOGIN_MAX_ATTEMPTS_PER_ADDRESS,
      addressWindowSeconds: env.LOGIN_ADDRESS_WINDOW_SECONDS,
    },
    signup: { maxPerAddress: env.SIGNUP_MAX_PER_ADDRESS, windowSeconds: env.SIGNUP_WINDOW_SECONDS },
    accountMail: { smtpUrl: env.SMTP_URL, from: env.MAIL_FROM },
    metricsToken: env.METRICS_TOKEN,
    tracking: {
      appleMppRanges: env.APPLE_MPP_RANGES,
      rawRetentionDays: env.TRACKING_RAW_RETENTION_DAYS,
      bufferMax: env.TRACKING_BUFFER_MAX,
      clickTimeoutMs: env.TRACKING_CLICK_TIMEOUT_MS,
    },
    privacy: {
      suppressionHashKey: env.SUPPRESSION_HASH_KEY!,
      purgeAfterDays: env.PURGE_AFTER_DAYS,
      consentHistoryRetentionDays: env.CONSENT_HISTORY_RETENTION_DAYS,
      inactiveAccountPurgeYears: env.INACTIVE_ACCOUNT_PURGE_YEARS,
      inactiveAccountWarningDays: env.INACTIVE_ACCOUNT_WARNING_DAYS,
    },
    webhooks: {
      allowPrivateTargets: env.WEBHOOKS_ALLOW_PRIVATE_TARGETS === 'true',
      requireHttps: env.NODE_ENV === 'production',
      timeoutMs: env.WEBHOOKS_TIMEOUT_MS,
      retryBaseMs: Math.round(env.WEBHOOKS_RETRY_BASE_SECONDS * 1000),
      retryWindowMs: Math.round(env.WEBHOOKS_RETRY_WINDOW_HOURS * 3_600_000),
      disableAfterFailures: env.WEBHOOKS_DISABLE_AFTER_FAILURES,
      disableAfterMs: Math.round(env.WEBHOOKS_DISABLE_AFTER_HOURS * 3_600_000),
      secretGraceMs: Math.round(env.WEBHOOKS_SECRET_GRACE_HOURS * 3_600_000),
      maxEndpointsPerWorkspace: env.WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE,
      eventRetentionMs: env.WEBHOOKS_EVENT_RETENTION_DAYS * 86_400_000,
    },
    generatedSecrets,
    audit: { retentionDays: env.AUDIT_RETENTION_DAYS },
    web: { sessionTtlMs: Math.round(env.WEB_SESSION_TTL_HOURS * 3600 * 1000) },
  });
}

export function isGoogleConfigured(config: Config): boolean {
  return Boolean(config.google.clientId);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
