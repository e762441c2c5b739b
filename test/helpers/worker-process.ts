import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { TEST_ENV, type TestApp } from './test-app.js';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * The service as another process (`src/main.ts`, started with tsx): its own pacer, leases and
 * jobs, over the test's PostgreSQL server database and the sandbox of `app` (over HTTP). For the
 * tests that kill it with SIGKILL. `env` adds to or replaces the test settings.
 */
export function startWorkerProcess(app: TestApp, input: { databaseUrl: string; dataDir: string; env?: Record<string, string> }): {
  child: ChildProcess;
  exited: Promise<void>;
  output: () => string;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      ...TEST_ENV,
      LOG_LEVEL: 'warn',
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: input.dataDir,
      DATABASE_URL: input.databaseUrl,
      ...app.sandbox.env(),
      GOOGLE_REDIRECT_URI: 'http://127.0.0.1:1/api/gmail/callback',
      ...input.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, exited, output: () => output };
}
