/**
 * What the campaign benchmarks and the multi-process tests share: the environment that
 * points a service (in-process or a child process) at a Gmail sandbox, a workspace with a
 * connected mailbox and a launched campaign to N opted-in contacts, scratch databases on a
 * PostgreSQL server, and child processes of the service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import type { Services } from '../../src/app.js';
import { GMAIL_DAILY_SEND_LIMITS } from '../../src/config/schema.js';
import type { Database } from '../../src/db/connect.js';
import { benchAccount, benchMailbox } from './bench-account.js';

export const root = path.resolve(import.meta.dirname, '../..');
const tsx = path.join(root, 'node_modules/.bin/tsx');
export const SANDBOX_CLIENT_ID = 'bench-client';
export const SANDBOX_CLIENT_SECRET = 'bench-secret';

/** Secrets and Google settings for a service talking to the sandbox at `sandboxUrl`; every process given these shares tokens. */
export function serviceEnv(sandboxUrl: string): Record<string, string> {
  return {
    NODE_ENV: 'test',
    JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-000000',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 3).toString('base64')}`,
    TRACKING_SECRET: 'v1:bench-tracking-secret-long-enough-000000',
    SUPPRESSION_HASH_KEY: 'bench-suppression-hash-key-long-enough-000000',
    PUBLIC_BASE_URL: 'http://127.0.0.1:1',
    GOOGLE_CLIENT_ID: SANDBOX_CLIENT_ID,
    GOOGLE_CLIENT_SECRET: SANDBOX_CLIENT_SECRET,
    GOOGLE_REDIRECT_URI: 'http://127.0.0.1:1/api/gmail/callback',
    GOOGLE_API_ROOT_URL: sandboxUrl,
    GOOGLE_OAUTH_AUTHORIZE_URL: `${sandboxUrl}/o/oauth2/v2/auth`,
    GOOGLE_OAUTH_TOKEN_URL: `${sandboxUrl}/token`,
    GOOGLE_OAUTH_REVOKE_URL: `${sandboxUrl}/revoke`,
    GOOGLE_CERTS_URL: `${sandboxUrl}/oauth2/v1/certs`,
  };
}

/** The sandbox as its own process (its in-memory mail store then does not count toward the measured heap). */
export async function startSandboxProcess(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(tsx, ['scripts/sandbox.ts'], {
    cwd: root,
    env: { ...process.env, SANDBOX_PORT: '0', SANDBOX_AUTO_APPROVE: '1', SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += String(chunk);
      const match = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', () => reject(new Error('sandbox exited')));
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

/** A fresh database on a PostgreSQL server (named with `prefix` and a random part), and a way to drop it. */
export async function createScratchDatabase(serverUrl: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const dropper = new pg.Client({ connectionString: serverUrl });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

export interface SeededCampaign {
  workspaceId: string;
  mailboxId: string;
  mailboxEmail: string;
  campaignId: string;
}

/**
 * A workspace whose owner connected `mailboxEmail` (with read access when `sync`), N opted-in
 * contacts r<i>@<domain>, and a marketing campaign to all of them, launched: its sends are due now.
 * `steps` (default 1): a sequence of that many steps, each later one due `afterDays` (default 0:
 * at once) after the recipient's previous step was sent, from a mailbox connected with sync (by
 * default; launch refuses a sequence otherwise). The daily budget covers every step.
 */
export async function seedCampaign(
  services: Services,
  database: Database,
  options: { recipients: number; mailboxEmail: string; domain: string; sync?: boolean; dailyBudget?: number; steps?: number; afterDays?: number },
): Promise<SeededCampaign> {
  const { auth, workspace } = await benchAccount(services, `owner-${randomBytes(4).toString('hex')}@${options.domain}`);
  await services.auth.updateWorkspace(auth, { postalAddress: '1 Bench Street, Testville' });
  const steps = options.steps ?? 1;
  // A sequence needs a mailbox sync can read (follow-ups stop on a reply): launch refuses a send-only one.
  const mailbox = await benchMailbox(services, auth, { sync: options.sync ?? steps > 1, loginHint: options.mailboxEmail });
  const dailyBudget = options.dailyBudget ?? options.recipients * steps + 10;
  // A benchmark sends more in a day than Gmail allows (it measures the pipeline, not Gmail): in its
  // own database, and only there, budgets count past Gmail's limit (migration 0059).
  if (dailyBudget > GMAIL_DAILY_SEND_LIMITS.workspace) {
    await database.db.execute(sql.raw(`create or replace function mailbox_gmail_daily_limit(p_kind mailbox_kind) returns integer language sql immutable as $$ select 2147483647 $$`));
  }
  await database.db.execute(sql`update mailboxes set daily_budget = ${dailyBudget} where id = ${mailbox.id}::uuid`);

  await database.db.execute(sql`
    insert into contacts (workspace_id, email, first_name, attributes)
    select ${workspace.id}::uuid, 'r' || g || '@' || ${options.domain}, 'Name' || g, jsonb_build_object('plan', case when g % 2 = 0 then 'pro' else 'free' end)
    from generate_series(1, ${options.recipients}) g`);
  await database.db.execute(sql`
    insert into consents (workspace_id, contact_id, status, source, policy_version, actor)
    select workspace_id, id, 'opted_in', 'bench', '2026-11-01', 'system' from contacts where workspace_id = ${workspace.id}::uuid`);
  const campaign = await services.campaigns.create(auth, {
    name: 'bench',
    kind: 'marketing',
    mailboxId: mailbox.id,
    subject: 'Hello {{firstName | "there"}}',
    html: '<p>Hi {{firstName}}, read <a href="https://acme.test/post">the post</a> about {{plan}}.</p>',
    audience: { segment: { all: [{ field: 'email', op: 'contains', value: `@${options.domain}` }] } },
    steps: Array.from({ length: steps - 1 }, (_, i) => ({
      afterDays: options.afterDays ?? 0,
      subject: `Step ${i + 2}: still there, {{firstName | "friend"}}?`,
      html: `<p>Hi {{firstName}}, a follow-up (${i + 2}) on <a href="https://acme.test/post">the post</a> about {{plan}}.</p>`,
    })),
  });
  await services.campaigns.launch(auth, campaign.id, {});
  return { workspaceId: workspace.id, mailboxId: mailbox.id, mailboxEmail: mailbox.email, campaignId: campaign.id };
}

export interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** The service as a real child process: `tsx <entry>` (src/main.ts or scripts/worker.ts) with exactly `env` (and PATH). */
export function spawnService(entry: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(tsx, [entry], { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}
