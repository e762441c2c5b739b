import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-config-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const KEY = Buffer.alloc(32, 1).toString('base64');
const secrets = {
  JWT_SECRET: 'j'.repeat(40),
  TOKEN_ENCRYPTION_KEYS: `v1:${KEY}`,
  TRACKING_SECRET: 't'.repeat(40),
  SUPPRESSION_HASH_KEY: 'h'.repeat(40),
};
const google = { GOOGLE_CLIENT_ID: 'client.apps.googleusercontent.com', GOOGLE_CLIENT_SECRET: 'client-secret', GOOGLE_REDIRECT_URI: 'https://mail.example.com/api/gmail/callback' };

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('starts with no configuration at all, generating development secrets once into the data dir', () => {
    const dataDir = tempDir();
    const first = loadConfig({ DATA_DIR: dataDir });
    expect(first.port).toBe(3000);
    expect(first.database).toEqual({ kind: 'pglite', dir: path.join(dataDir, 'pglite') });
    expect(first.generatedSecrets).toEqual(['JWT_SECRET', 'TOKEN_ENCRYPTION_KEYS', 'TRACKING_SECRET', 'SUPPRESSION_HASH_KEY']);
    const file = path.join(dataDir, 'secrets.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const second = loadConfig({ DATA_DIR: dataDir });
    expect(second.jwt).toEqual(first.jwt);
    expect(second.tokenEncryptionKeys[0]!.key.equals(first.tokenEncryptionKeys[0]!.key)).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8')).JWT_SECRET).toBe(first.jwt.algorithm === 'HS256' ? first.jwt.secret : '');
  });

  it('adds a secret introduced later to an older development secrets file, keeping the others', () => {
    const dataDir = tempDir();
    const file = path.join(dataDir, 'secrets.json');
    writeFileSync(file, JSON.stringify({ JWT_SECRET: 'o'.repeat(40), TOKEN_ENCRYPTION_KEYS: `v1:${KEY}`, TRACKING_SECRET: 'p'.repeat(40) }));
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config.jwt).toMatchObject({ secret: 'o'.repeat(40) });
    expect(config.privacy.suppressionHashKey.length).toBeGreaterThanOrEqual(32);
    expect(JSON.parse(readFileSync(file, 'utf8')).SUPPRESSION_HASH_KEY).toBe(config.privacy.suppressionHashKey);
  });

  it('lists every bad variable in one error and never prints a value', () => {
    const error = configError({
      PORT: 'eighty',
      DATABASE_URL: 'mysql://root:hunter2-password@db/x',
      JWT_SECRET: 'short-secret-value',
      TOKEN_ENCRYPTION_KEYS: 'v1:c2hvcnQ=',
      LOG_LEVEL: 'loud',
    });
    expect(error.problems.map((p) => p.split(':')[0])).toEqual(['PORT', 'DATABASE_URL', 'JWT_SECRET', 'TOKEN_ENCRYPTION_KEYS', 'LOG_LEVEL']);
    expect(error.message).not.toContain('hunter2');
    expect(error.message).not.toContain('short-secret-value');
    expect(error.message).not.toContain('c2hvcnQ=');
  });

  it('NODE_ENV=production requires the secrets and names each missing one', () => {
    const error = configError({ NODE_ENV: 'production', DATA_DIR: tempDir() });
    expect(error.problems).toEqual([
      'JWT_SECRET: required when NODE_ENV=production',
      'TOKEN_ENCRYPTION_KEYS: required when NODE_ENV=production',
      'TRACKING_SECRET: required when NODE_ENV=production',
      'SUPPRESSION_HASH_KEY: required when NODE_ENV=production',
      'PUBLIC_BASE_URL: required when NODE_ENV=production',
      'GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI: required when NODE_ENV=production (without them Gmail is the built-in sandbox and mail reaches nobody)',
    ]);
  });

  it('production with Gmail push on requires GMAIL_PUSH_SERVICE_ACCOUNT (else any Google-signed account would be accepted)', () => {
    const base = { NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://mail.example.com/', ...secrets, ...google };
    const error = configError({ ...base, GMAIL_PUSH_TOPIC: 'projects/p/topics/t' });
    expect(error.problems).toEqual([expect.stringMatching(/^GMAIL_PUSH_SERVICE_ACCOUNT: required/)]);
    expect(() => loadConfig({ ...base, GMAIL_PUSH_TOPIC: 'projects/p/topics/t', GMAIL_PUSH_SERVICE_ACCOUNT: 'push@p.iam.gserviceaccount.com' })).not.toThrow();
  });

  it('keeps webhook payloads (they name addresses) no longer than a deleted contact may last: 30 days (P-13)', () => {
    expect(configError({ WEBHOOKS_EVENT_RETENTION_DAYS: '31', DATA_DIR: tempDir() }).problems).toEqual([expect.stringMatching(/^WEBHOOKS_EVENT_RETENTION_DAYS: /)]);
    expect(loadConfig({ WEBHOOKS_EVENT_RETENTION_DAYS: '30', DATA_DIR: tempDir() }).webhooks.eventRetentionMs).toBe(30 * 86_400_000);
  });

  it('refuses a default daily budget above Gmail’s own limit (2000 Google Workspace, 500 consumer), naming it; the limits themselves boot', () => {
    const problems = configError({ GMAIL_DAILY_BUDGET_WORKSPACE: '2001', GMAIL_DAILY_BUDGET_CONSUMER: '501', DATA_DIR: tempDir() }).problems;
    expect(problems.map((p) => p.split(':')[0])).toEqual(['GMAIL_DAILY_BUDGET_WORKSPACE', 'GMAIL_DAILY_BUDGET_CONSUMER']);
    expect(loadConfig({ GMAIL_DAILY_BUDGET_WORKSPACE: '2000', GMAIL_DAILY_BUDGET_CONSUMER: '500', DATA_DIR: tempDir() }).gmail.dailyBudget).toEqual({ workspace: 2000, consumer: 500 });
  });

  it('production with everything set boots, generating nothing', () => {
    const config = loadConfig({ NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://mail.example.com/', DATABASE_URL: 'postgres://u@db/x', ...secrets, ...google });
    expect(config.generatedSecrets).toEqual([]);
    expect(config.publicBaseUrl).toBe('https://mail.example.com');
    expect(config.database).toEqual({ kind: 'postgres', url: 'postgres://u@db/x', connectTimeoutMs: 2_000, statementTimeoutMs: 10_000 });
  });

  it('TRACKING_SECRET: a version given twice, or named and bare entries mixed, is refused at boot (old links would stop working)', () => {
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    for (const value of [`v1:${a},v1:${b}`, `v2:${b},${a}`, `${a},v1:${b}`, `v256:${a}`, `v1:${a},v01:${b}`]) {
      expect(configError({ ...secrets, TRACKING_SECRET: value, DATA_DIR: tempDir() }).problems, value).toEqual([expect.stringMatching(/^TRACKING_SECRET: /)]);
    }
    expect(loadConfig({ ...secrets, TRACKING_SECRET: `v1:${a},v2:${b}`, DATA_DIR: tempDir() }).trackingSecrets.map((s) => s.version)).toEqual(['v1', 'v2']);
    expect(loadConfig({ ...secrets, TRACKING_SECRET: `${a},${b}`, DATA_DIR: tempDir() }).trackingSecrets.map((s) => s.version)).toEqual(['v1', 'v2']);
  });

  it('treats blank variables as unset (a copied .env.example boots)', () => {
    const config = loadConfig({ ...secrets, PORT: '', DATABASE_URL: '', GOOGLE_CLIENT_ID: '' });
    expect(config.port).toBe(3000);
    expect(config.google.clientId).toBeUndefined();
  });

  it('.env.example lists every variable the service reads, and nothing it does not', async () => {
    const { envSchema } = await import('./config/schema.js');
    const example = readFileSync(path.join(import.meta.dirname, '..', '.env.example'), 'utf8');
    const listed = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
    expect([...Object.keys(envSchema.shape)].filter((name) => !listed.has(name))).toEqual([]);
    // INBOXTRAIL_*: read by the command-line client (`npm run campaign`), not by the service.
    expect([...listed].filter((name) => !(name in envSchema.shape) && !name.startsWith('INBOXTRAIL_'))).toEqual([]);
  });

  it('parses versioned encryption keys (the last one encrypts) and refuses duplicates', () => {
    const two = loadConfig({ ...secrets, TOKEN_ENCRYPTION_KEYS: `v1:${KEY}, v2:${Buffer.alloc(32, 2).toString('base64')}` });
    expect(two.tokenEncryptionKeys.map((k) => k.version)).toEqual(['v1', 'v2']);
    expect(configError({ ...secrets, TOKEN_ENCRYPTION_KEYS: `v1:${KEY},v1:${KEY}` }).problems[0]).toMatch(/unique/);
  });

  it('TOKEN_ENCRYPTION_ACTIVE_VERSION picks the key that encrypts (a new key can be deployed to decrypt only first); an unknown version is an error', async () => {
    const { createTokenCipher } = await import('./gmail/token-cipher.js');
    const keys = `v1:${KEY},v2:${Buffer.alloc(32, 2).toString('base64')}`;
    const staged = loadConfig({ ...secrets, TOKEN_ENCRYPTION_KEYS: keys, TOKEN_ENCRYPTION_ACTIVE_VERSION: 'v1' });
    expect(staged.tokenEncryptionKeys.map((k) => k.version)).toEqual(['v2', 'v1']);
    // What the staged process writes, a process that has only v1 still reads.
    const written = createTokenCipher(staged.tokenEncryptionKeys).encrypt('refresh-token', 'mailbox:m:refresh');
    expect(written.startsWith('v1.')).toBe(true);
    expect(createTokenCipher([{ version: 'v1', key: Buffer.from(KEY, 'base64') }]).decrypt(written, 'mailbox:m:refresh')).toBe('refresh-token');
    expect(configError({ ...secrets, TOKEN_ENCRYPTION_KEYS: keys, TOKEN_ENCRYPTION_ACTIVE_VERSION: 'v3' }).problems).toEqual([
      'TOKEN_ENCRYPTION_ACTIVE_VERSION: must name a version of TOKEN_ENCRYPTION_KEYS',
    ]);
  });

  it('takes pglite:<dir> and an RS256 key pair; a half-configured pair or Google client is an error', () => {
    const config = loadConfig({ ...secrets, DATABASE_URL: 'pglite:/tmp/x', JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----x', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----y' });
    expect(config.database).toEqual({ kind: 'pglite', dir: '/tmp/x' });
    expect(config.jwt.algorithm).toBe('RS256');
    expect(configError({ ...secrets, JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----x' }).problems).toEqual([
      'JWT_PRIVATE_KEY and JWT_PUBLIC_KEY must be set together',
    ]);
    expect(configError({ ...secrets, GOOGLE_CLIENT_ID: 'abc' }).problems).toEqual([
      'GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI must be set together',
    ]);
  });

  it('ROLE: all by default; web and worker only with a PostgreSQL server and a Google client shared by every process', () => {
    expect(loadConfig(secrets).role).toBe('all');
    const google = { GOOGLE_CLIENT_ID: 'id', GOOGLE_CLIENT_SECRET: 's', GOOGLE_REDIRECT_URI: 'https://crm.example.com/api/gmail/callback' };
    const server = { DATABASE_URL: 'postgres://u@db:5432/inboxtrail' };
    expect(loadConfig({ ...secrets, ...google, ...server, ROLE: 'worker' }).role).toBe('worker');
    expect(loadConfig({ ...secrets, ...google, ...server, ROLE: 'web' }).role).toBe('web');
    expect(configError({ ...secrets, ROLE: 'both' }).problems).toEqual(['ROLE: must be all, web or worker']);
    const problems = configError({ ...secrets, ROLE: 'worker' }).problems;
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^ROLE=worker: needs DATABASE_URL=postgres/);
    expect(problems[1]).toMatch(/^ROLE=worker: needs GOOGLE_CLIENT_ID/);
    expect(configError({ ...secrets, ...google, DATABASE_URL: 'pglite:/tmp/x', ROLE: 'web' }).problems).toHaveLength(1);
  });

  it('GMAIL_SENDS_PER_MINUTE (default 60) and GMAIL_QUOTA_UNITS_PER_MINUTE (default 15,000)', () => {
    expect(loadConfig(secrets).gmail).toMatchObject({ sendsPerMinute: 60, quotaUnitsPerMinute: 15_000 });
    expect(loadConfig({ ...secrets, GMAIL_SENDS_PER_MINUTE: '20' }).gmail.sendsPerMinute).toBe(20);
    expect(configError({ ...secrets, GMAIL_SENDS_PER_MINUTE: '0' }).problems.map((p) => p.split(':')[0])).toEqual(['GMAIL_SENDS_PER_MINUTE']);
  });

  it('is frozen', () => {
    const config = loadConfig(secrets);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.google)).toBe(true);
  });
});
