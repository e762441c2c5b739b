import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/db/connect.js';
import { spawnWithOutput, waitForHealth } from '../helpers/spawned.js';
import { freePort } from '../helpers/test-app.js';

/*
 * `npm start` as a newcomer runs it: npm itself, a real process tree (npm, then the script's
 * shell replaced by tsx, then node), no configuration but a scratch data dir and free ports.
 * Proves migrate-at-boot, the console message, and that SIGTERM to npm stops everything it
 * started: the server and the in-process sandbox stop listening and npm exits 0. (Before the
 * script exec'd, npm's SIGTERM ended the shell and left the server running, orphaned.)
 */

const root = path.resolve(import.meta.dirname, '../..');
/** util-linux `script`, which runs a command on a terminal of its own (absent: the real-terminal test is skipped). */
const hasScript = spawnSync('script', ['--version']).status === 0;
const dirs: string[] = [];
const started: ChildProcess[] = [];
/** Services on a terminal of their own (their own session: not in `started`'s groups). */
const services: number[] = [];
afterAll(() => {
  for (const pid of services) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // Whatever a failed test left running (the orphaned server this file exists to catch): the whole group.
  for (const child of started) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function run(env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  // A process group of its own (detached), so that afterAll can end everything npm started; the test itself signals npm alone.
  const proc = spawnWithOutput('npm', ['start'], { cwd: root, detached: true, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env } });
  started.push(proc.child);
  return proc;
}

describe('npm start', () => {
  it('boots with no configuration, serves /healthz, and exits cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    const sandboxPort = await freePort();
    const proc = run({ DATA_DIR: dataDir, PORT: String(port), SANDBOX_PORT: String(sandboxPort) });
    const health = await waitForHealth(port, 120);
    expect(health?.status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(proc.output()).toContain(`listening on http://localhost:${port}`);
    expect(proc.output()).toMatch(/Gmail: /);
    expect(proc.output()).toContain('development secrets in use, generated once into the data dir');

    expect((await fetch(`http://127.0.0.1:${sandboxPort}/`)).status).toBeLessThan(500);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    // Nothing it started still answers (the process tree is gone, not just npm).
    const listening = async (p: number) => fetch(`http://127.0.0.1:${p}/healthz`).then(() => true, () => false);
    expect([await listening(port), await listening(sandboxPort)]).toEqual([false, false]);
  }, 60_000);

  it('Ctrl+C (SIGINT to the whole process group) lets the service finish its stop: it says so and exits 0', async () => {
    // tsx's own runner relayed the signal and killed its child when it did not answer within
    // ~30 ms, so a loaded host lost the graceful stop (buffered events, the database's close).
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    const proc = run({ DATA_DIR: dataDir, PORT: String(port), SANDBOX_PORT: String(await freePort()) });
    const health = await waitForHealth(port, 120);
    expect(health?.status).toBe(200);
    process.kill(-proc.child.pid!, 'SIGINT');
    expect(await proc.exited).toBe(0);
    expect(proc.output()).toContain('"msg":"stopped"');
  }, 60_000);

  it('closing the terminal (SIGHUP to the whole process group) lets the service finish its stop and release the data dir', async () => {
    // Node's default for SIGHUP is to die at once: the held clicks and the buffer unwritten,
    // the embedded database not closed and its lock left behind. npm itself still dies at once
    // (it forwards only SIGINT and SIGTERM); the service got the signal too and stops on its own.
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    const proc = run({ DATA_DIR: dataDir, PORT: String(port), SANDBOX_PORT: String(await freePort()) });
    // The output pipe ends when the last process holding it (the service, not npm) has exited.
    const outputEnded = new Promise<void>((resolve) => proc.child.stdout!.once('close', () => resolve()));
    expect((await waitForHealth(port, 240))?.status).toBe(200);
    const lock = path.join(dataDir, 'pglite.lock');
    expect(existsSync(lock)).toBe(true);
    process.kill(-proc.child.pid!, 'SIGHUP');
    await outputEnded;
    expect(proc.output()).toContain('"signal":"SIGHUP"');
    expect(proc.output()).toContain('"msg":"stopped"');
    expect(existsSync(lock)).toBe(false);
    // The data dir opens at once, closed cleanly (no lock to take over, nothing to recover).
    const database = await connect({ kind: 'pglite', dir: path.join(dataDir, 'pglite') });
    await database.ping();
    await database.close();
  }, 120_000);

  it.skipIf(!hasScript)('closing a real terminal that runs npm start: the service stops within 5 s and releases the data dir', async () => {
    // `script` gives npm a terminal of its own; killing `script` closes it (SIGHUP to the
    // terminal's processes, and every later write to it fails with EIO). Before, the service's
    // first log line of the stop failed so, and pino retried it forever at exit: the process
    // stopped listening but never exited, holding the data dir's lock.
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), DATA_DIR: dataDir, PORT: String(port), SANDBOX_PORT: String(await freePort()) };
    const terminal = spawnWithOutput('script', ['-qfc', 'npm start', '/dev/null'], { cwd: root, detached: true, env });
    started.push(terminal.child);
    expect((await waitForHealth(port, 240))?.status, terminal.output().slice(-2000)).toBe(200);
    const lock = path.join(dataDir, 'pglite.lock');
    const servicePid = Number(readFileSync(lock, 'utf8').split('\n')[0]);
    services.push(servicePid);
    const alive = () => {
      try {
        process.kill(servicePid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive()).toBe(true);
    terminal.child.kill('SIGKILL');
    const closedAt = Date.now();
    while (alive() && Date.now() - closedAt < 10_000) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(alive()).toBe(false);
    expect(Date.now() - closedAt).toBeLessThan(5_500);
    expect(existsSync(lock)).toBe(false);
    const database = await connect({ kind: 'pglite', dir: path.join(dataDir, 'pglite') });
    await database.ping();
    await database.close();
  }, 120_000);

  it('refuses to boot in production without secrets, naming each one', async () => {
    const proc = run({ NODE_ENV: 'production', DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-start-')) });
    expect(await proc.exited).toBe(1);
    for (const name of ['JWT_SECRET', 'TOKEN_ENCRYPTION_KEYS', 'TRACKING_SECRET', 'PUBLIC_BASE_URL']) expect(proc.output()).toContain(name);
  }, 60_000);
});
