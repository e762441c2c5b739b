import { createHash } from 'node:crypto';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { Writable } from 'node:stream';
import type { Express } from 'express';
import { afterAll, beforeAll } from 'vitest';
import { createServices, type Services } from '../../src/app.js';
import { createApp, createHttpServer } from '../../src/http/express-app.js';
import { lastSignupCode } from '../../src/auth/account-mail.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Database } from '../../src/db/connect.js';
import { resolveGoogle, type ResolvedGoogle } from '../../src/gmail/google-settings.js';
import { createSqlLimitStore } from '../../src/gmail/limit-store.js';
import { MailboxPacer, type PacerOptions } from '../../src/gmail/pacer.js';
import { createLogger } from '../../src/logger.js';
import type { Sandbox } from '../../src/sandbox/index.js';
import { createTestDatabase } from './test-db.js';

export const TEST_ENV = {
  NODE_ENV: 'test',
  LOG_LEVEL: 'info',
  JWT_SECRET: 'test-jwt-secret-that-is-long-enough-0123456789',
  TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 7).toString('base64')}`,
  TRACKING_SECRET: 'v1:test-tracking-secret-that-is-long-enough-0123',
  PUBLIC_BASE_URL: 'http://127.0.0.1:1',
  // Every test client is on loopback and signs up many workspaces; the limits have their own tests.
  TRUST_PROXY: 'loopback',
  SIGNUP_MAX_PER_ADDRESS: '100000',
  METRICS_TOKEN: 'test-metrics-token-0123456789',
  SUPPRESSION_HASH_KEY: 'test-suppression-hash-key-long-enough-0123456789',
};

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface TestApp {
  baseUrl: string;
  /** The Express app itself, for tests that walk its routes. */
  express: Express;
  config: Config;
  database: Database;
  /** The app's services, for tests that drive background jobs directly. */
  services: Services;
  /** The Gmail sandbox this app talks to (always present in tests). */
  sandbox: Sandbox;
  /** The Google client settings the app uses (the sandbox's client id and secret). */
  google: ResolvedGoogle;
  /** Every log line the app wrote, for redaction checks. */
  logs: string[];
  api<T = any>(method: string, path: string, options?: { token?: string; json?: unknown; body?: RequestInit['body']; headers?: Record<string, string> }): Promise<ApiResponse<T>>;
  close(): Promise<void>;
}

/** The real app on a real socket over a private test database. */
export async function startTestApp(
  options: {
    env?: Record<string, string>;
    database?: Database;
    pacer?: PacerOptions;
    /** The app's clock: tests of time windows (purge after 30 days, retention) move it forward. */
    now?: () => Date;
    /** Listen here (browser tests: PUBLIC_BASE_URL must name the real port, see freePort). */
    port?: number;
    /** false: the sandbox shows its consent page, as a person sees it (browser tests). */
    autoApprove?: boolean;
  } = {},
): Promise<TestApp> {
  const config = loadConfig({ ...TEST_ENV, ...options.env });
  const database = options.database ?? (await createTestDatabase());
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  // Gmail is always the sandbox over real HTTP, auto-approving consent like a person who clicks Allow.
  const google = await resolveGoogle(config, { autoApprove: options.autoApprove ?? true, sandboxPort: 0 });
  // The service's pacer (limits shared through the database), with short backoffs and neither a sends-per-minute pace nor Gmail's quota unless a test sets one (pacer.test.ts and processes.test.ts test those).
  // A short claim grace: a reconnect, a disconnect or a budget change has the daily budget counted again, and that recount holds the
  // next send until the last grant is the grace old (10 s in service). A grant here is claimed within milliseconds; one claimed
  // later than 250 ms while a recount runs would be counted one short, so the tests that fill a budget with concurrent sends set
  // their own grace (daily-budget*.test.ts).
  const pacer = new MailboxPacer({
    store: createSqlLimitStore(database.db),
    baseDelayMs: 5,
    maxDelayMs: 5_000,
    sendsPerMinute: 1e6,
    unitsPerMinute: 1e9,
    budgetClaimGraceMs: 250,
    ...options.pacer,
  });
  const deps = { config, database, logger: createLogger(config.logLevel, sink), google, pacer, now: options.now };
  const services = createServices(deps);
  const app = createApp(deps, services);
  // The same server main.ts runs: /t/ tracking URLs in the listener, the rest through Express.
  const server = createHttpServer(app, services).listen(options.port ?? 0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    baseUrl,
    express: app,
    sandbox: google.sandbox!,
    google,
    services,
    config,
    database,
    logs,
    async api(method, path, { token, json, body, headers = {} } = {}) {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: {
          ...(json !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          // Like the Prometheus scraper configured with METRICS_TOKEN (tests of the refusal use fetch).
          ...(path === '/metrics' && config.metricsToken ? { authorization: `Bearer ${config.metricsToken}` } : {}),
          ...headers,
        },
        body: json !== undefined ? JSON.stringify(json) : body,
        // Tests look at redirects themselves.
        redirect: 'manual',
      });
      const text = await response.text();
      let parsed: unknown = text;
      if (response.headers.get('content-type')?.includes('json') && text) parsed = JSON.parse(text);
      return { status: response.status, headers: response.headers, body: parsed as any, text };
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await services.tracking.close({ timeoutMs: 2_000 });
      await google.sandbox?.close();
      if (!options.database) await database.close();
    },
  };
}

/** A port nothing listens on now, so an app can be told its own URL (PUBLIC_BASE_URL) before it starts. */
export async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => probe.once('listening', () => resolve()));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

let counter = 0;
/** Signs up a fresh workspace and its owner; returns the owner's token and ids. */
export async function signUp(app: TestApp, overrides: { email?: string; password?: string; workspaceName?: string } = {}) {
  counter += 1;
  const email = overrides.email ?? `owner${counter}-${Date.now()}@example.com`;
  const password = overrides.password ?? 'a-long-enough-password';
  const asked = await app.api('POST', '/api/auth/signup', {
    json: { email, password, workspaceName: overrides.workspaceName ?? `Workspace ${counter}` },
  });
  if (asked.status !== 202) throw new Error(`signup failed: ${asked.status} ${asked.text}`);
  const res = await verifySignup(app, email);
  if (res.status !== 201) throw new Error(`signup confirmation failed: ${res.status} ${res.text}`);
  return { token: res.body.token as string, userId: res.body.user.id as string, workspaceId: res.body.workspace.id as string, email, password };
}

/** Confirms the newest signup of `email` with the code from its (in-memory) confirmation mail, like its owner would. */
export async function verifySignup(app: TestApp, email: string, password?: string) {
  const code = lastSignupCode(app.services.accountMailer.outbox ?? [], email.trim().toLowerCase());
  if (!code) throw new Error(`no signup confirmation mail to ${email}`);
  return app.api('POST', '/api/auth/signup/verify', { json: { code, ...(password === undefined ? {} : { password }) } });
}

/**
 * Accepts an invitation as its invitee would: an existing account with its password (201 at
 * once); a new address without one (as the web form asks: a password given there would be a
 * failed login on the address), then confirms with the code mailed to it, choosing `password`
 * there (the 201 of signup/verify). Any other answer — the 202 of an existing account whose
 * password was wrong, too — is returned as it came.
 */
export async function acceptInvitation(app: TestApp, json: { token: string; password: string; name?: string }) {
  const tokenHash = createHash('sha256').update(json.token).digest('hex');
  const invited = await app.database.db.execute(
    sql`select email, exists (select 1 from users u where u.email = i.email and u.deleted_at is null) as "hasAccount" from invitations i where token_hash = ${tokenHash}`,
  );
  const row = (invited as unknown as { rows: { email: string; hasAccount: boolean }[] }).rows[0];
  const accepted = await app.api('POST', '/api/invitations/accept', { json: row && !row.hasAccount ? { token: json.token } : json });
  if (accepted.status !== 202 || !row || row.hasAccount) return accepted;
  return verifySignup(app, row.email, json.password);
}

/**
 * The usual file setup: one app for the file and a signed-up owner, both ready in the
 * tests (read them inside tests or hooks, not at import time).
 */
export function useAppWithOwner(options: Parameters<typeof startTestApp>[0] = {}) {
  const ctx = {} as { app: TestApp; owner: Awaited<ReturnType<typeof signUp>> };
  beforeAll(async () => {
    ctx.app = await startTestApp(options);
    ctx.owner = await signUp(ctx.app);
  });
  afterAll(async () => {
    await ctx.app?.close();
  });
  return ctx;
}
