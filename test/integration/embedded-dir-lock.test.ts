import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/db/connect.js';
import { spawnWithOutput, waitForHealth } from '../helpers/spawned.js';
import { freePort } from '../helpers/test-app.js';

/*
 * One embedded (PGlite) data dir, one process. Two `npm start` on the same ./data both booted:
 * each kept its own copy of the database in memory and the last to write won on disk, so the
 * accounts made through the other were gone after a restart (seen by hand: two of four signups
 * lost). Real processes here: the service, then `npm run migrate` on its dir (refused, naming
 * the service's pid), the service killed with SIGKILL (its lock left behind), and the same
 * command taking the stale lock over.
 */

const root = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
const started: ChildProcess[] = [];
afterAll(() => {
  for (const child of started) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function start(script: string, env: Record<string, string>) {
  const proc = spawnWithOutput(process.execPath, ['--import', 'tsx', script], { cwd: root, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env } });
  started.push(proc.child);
  return proc;
}

describe('an embedded data dir is used by one process at a time', () => {
  it('a second process on the dir of a running service is refused, naming it; after a kill -9 the dir is taken over', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-dirlock-'));
    dirs.push(dataDir);
    const port = await freePort();
    const service = start('src/main.ts', { DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', SANDBOX_PORT: String(await freePort()) });
    const health = await waitForHealth(port);
    expect(health?.status, service.output()).toBe(200);

    const migrate = { DATABASE_URL: `pglite:${path.join(dataDir, 'pglite')}` };
    const second = start('scripts/migrate.ts', migrate);
    expect(await second.exited).toBe(1);
    expect(second.output()).toContain(`is open in another process (pid ${service.child.pid})`);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200); // the service never noticed

    service.child.kill('SIGKILL');
    await service.exited;
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(true); // left behind by the killed process
    const third = start('scripts/migrate.ts', migrate);
    expect(await third.exited, third.output()).toBe(0);
    expect(third.output()).toContain('migrations applied');
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false); // released at close
  }, 120_000);

  it('in one process too: a second connect on an open dir is refused; after close it opens again', async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-dirlock-')), 'pglite');
    dirs.push(path.dirname(dir));
    const first = await connect({ kind: 'pglite', dir });
    await expect(connect({ kind: 'pglite', dir })).rejects.toThrow(`is open in another process (pid ${process.pid})`);
    await first.close();
    const again = await connect({ kind: 'pglite', dir });
    await again.ping();
    await again.close();
  }, 60_000);
});
