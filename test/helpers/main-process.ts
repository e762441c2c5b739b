import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { connect, type Database } from '../../src/db/connect.js';
import { createTestDatabase } from './test-db.js';
import { TEST_ENV } from './test-app.js';

/*
 * The service as a real process (src/main.ts, as `npm start` runs it) over a database this
 * process prepared, for tests of how it stops. `cleanup` collects what afterAll must undo.
 */

const root = path.resolve(import.meta.dirname, '../..');
type Cleanup = (undo: () => Promise<unknown> | unknown) => void;

export interface MainProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

export function spawnMain(env: Record<string, string>, cleanup: Cleanup): MainProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...TEST_ENV, LOG_LEVEL: 'info', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup(() => child.exitCode === null && child.kill('SIGKILL'));
  let output = '';
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/**
 * A migrated database the child process can open (`url`, its DATABASE_URL): the server's test
 * copy (TEST_DATABASE_URL), or PGlite on disk from the run's template — `dir` to open one again
 * (one process at a time: close it before the child starts).
 */
export async function openSharedDatabase(cleanup: Cleanup, dir?: string): Promise<{ database: Database; url: string; embeddedDir?: string }> {
  if (process.env.TEST_DATABASE_URL) {
    const database = await createTestDatabase();
    return { database, url: database.url! };
  }
  if (dir) return { database: await connect({ kind: 'pglite', dir }), url: `pglite:${dir}`, embeddedDir: dir };
  const fresh = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-shutdown-'));
  cleanup(() => rmSync(fresh, { recursive: true, force: true }));
  const database = await connect({ kind: 'pglite', dir: fresh, loadDataDir: new Blob([readFileSync(inject('pgliteTemplateDump'))]) });
  return { database, url: `pglite:${fresh}`, embeddedDir: fresh };
}
