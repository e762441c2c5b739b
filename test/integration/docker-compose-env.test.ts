import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';

/*
 * README: "`docker compose up --build` … (fill a `.env` from `.env.example` first)". The app's
 * environment is then the image's ENV, overridden by every line of that `.env` (env_file: a
 * blank `NODE_ENV=` is set, to the empty string), overridden by the compose file's own
 * `environment:`. The blank NODE_ENV the copy keeps used to replace the image's
 * NODE_ENV=production, and the config reads blank as unset: the container booted as
 * development (no production checks, the sample Apple ranges) without a word.
 * The effective environment is worked out here as compose does; where a compose binary is
 * installed (not on CI), `compose config` is asked too and must agree.
 */

const root = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** `KEY=value` lines (comments and blank lines skipped; `KEY=` is the empty string, as compose sets it). */
function parseDotenv(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** The `KEY: value` entries of one service's `environment:` map, from compose YAML (ours, or `compose config`'s). */
function serviceEnvironment(yaml: string, service: string): Record<string, string> {
  const lines = yaml.split('\n');
  const start = lines.findIndex((line) => line === `  ${service}:`);
  const env = lines.findIndex((line, i) => i > start && line === '    environment:');
  const entries: Record<string, string> = {};
  for (const line of lines.slice(env + 1)) {
    if (/^ {6}#/.test(line)) continue;
    const match = /^ {6}([A-Z][A-Z0-9_]*): ?(.*)$/.exec(line);
    if (!match) break;
    entries[match[1]!] = match[2]!.replace(/^'(.*)'$|^"(.*)"$/, '$1$2');
  }
  return entries;
}

/** Compose's interpolation from the project's `.env`: `${X}`, `${X:-default}`, `${X:?message}` (empty counts as unset). */
function interpolate(value: string, dotenv: Record<string, string>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_, name: string, op?: string, arg?: string) => {
    const set = dotenv[name];
    if (set) return set;
    if (op === '-') return arg ?? '';
    if (op === '?') throw new Error(`compose refuses: ${arg}`);
    return '';
  });
}

/** The runtime stage's `ENV` (the last FROM's). */
function imageEnv(dockerfile: string): Record<string, string> {
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const block = /\nENV ((?:[^\n]*\\\n)*[^\n]*)/.exec(runtime)?.[1] ?? '';
  return Object.fromEntries([...block.matchAll(/([A-Z][A-Z0-9_]*)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
}

/** What a person fills into the copy of .env.example: the values the compose file insists on. */
const filled: Record<string, string> = {
  JWT_SECRET: 'j'.repeat(40),
  TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 1).toString('base64')}`,
  TRACKING_SECRET: 't'.repeat(40),
  SUPPRESSION_HASH_KEY: 's'.repeat(40),
  GOOGLE_CLIENT_ID: 'client.apps.googleusercontent.com',
  GOOGLE_CLIENT_SECRET: 'client-secret',
  GOOGLE_REDIRECT_URI: 'https://crm.example.com/api/gmail/callback',
};

function dotenvText(): string {
  return readFileSync(path.join(root, '.env.example'), 'utf8').replace(/^([A-Z][A-Z0-9_]*)=$/gm, (line, name: string) => (filled[name] ? `${name}=${filled[name]}` : line));
}

function composeBinary(): string[] | undefined {
  for (const command of [['docker', 'compose'], ['docker-compose']]) {
    try {
      execFileSync(command[0]!, [...command.slice(1), 'version'], { stdio: 'ignore' });
      return command;
    } catch {
      // not installed
    }
  }
  return undefined;
}

describe('docker compose with a .env filled from .env.example', () => {
  const dotenv = parseDotenv(dotenvText());
  const composeYaml = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
  const ownEnvironment = Object.fromEntries(Object.entries(serviceEnvironment(composeYaml, 'app')).map(([k, v]) => [k, interpolate(v, dotenv)]));
  const effective = { ...imageEnv(readFileSync(path.join(root, 'Dockerfile'), 'utf8')), ...dotenv, ...ownEnvironment };

  it('boots the image as production, with the secrets given and nothing generated', () => {
    expect(effective.NODE_ENV).toBe('production');
    const config = loadConfig(effective);
    expect(config.env).toBe('production');
    expect(config.generatedSecrets).toEqual([]);
    expect(config.database).toMatchObject({ kind: 'postgres' });
  });

  it('agrees with `compose config`, where a compose binary is installed', (context) => {
    const compose = composeBinary();
    if (!compose) {
      context.skip('no docker compose / docker-compose here: the worked-out environment above stands alone');
      return;
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-compose-'));
    dirs.push(dir);
    copyFileSync(path.join(root, 'docker-compose.yml'), path.join(dir, 'docker-compose.yml'));
    writeFileSync(path.join(dir, '.env'), dotenvText());
    const rendered = execFileSync(compose[0]!, [...compose.slice(1), 'config'], {
      cwd: dir,
      encoding: 'utf8',
      // Compose interpolates from the shell before .env: not vitest's NODE_ENV=test.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir },
    });
    const fromCompose = serviceEnvironment(rendered, 'app');
    expect(Object.keys(fromCompose).length).toBeGreaterThan(10);
    for (const [name, value] of Object.entries({ ...dotenv, ...ownEnvironment })) expect([name, fromCompose[name]]).toEqual([name, value]);
  });
});
