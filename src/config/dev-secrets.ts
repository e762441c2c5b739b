import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The file in DATA_DIR that holds the generated development secrets. */
export function devSecretsFile(dataDir: string): string {
  return path.join(dataDir, 'secrets.json');
}

/**
 * In development, missing secrets are generated once and kept in the data dir so that
 * tokens and encrypted rows stay valid across restarts. Production never does this.
 */
export function loadOrCreateDevSecrets(dataDir: string): Record<string, string> {
  const file = devSecretsFile(dataDir);
  const fresh: Record<string, () => string> = {
    JWT_SECRET: () => randomBytes(48).toString('base64url'),
    TOKEN_ENCRYPTION_KEYS: () => `v1:${randomBytes(32).toString('base64')}`,
    TRACKING_SECRET: () => `v1:${randomBytes(48).toString('base64url')}`,
    SUPPRESSION_HASH_KEY: () => randomBytes(48).toString('base64url'),
  };
  const stored = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : {};
  // A file written by an older version lacks the newer secrets: add them, keep the rest.
  if (Object.keys(fresh).every((name) => name in stored)) return stored;
  const secrets = { ...Object.fromEntries(Object.entries(fresh).map(([name, make]) => [name, make()])), ...stored };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}
