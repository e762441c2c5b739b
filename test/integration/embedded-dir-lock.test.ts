import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/db/connect.js';
import { HEARTBEAT_MS, STALE_MS } from '../../src/db/dir-lock.js';
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

  /*
   * A pid means a process only in its own pid space: a second container on the same volume
   * (`docker run … node dist/scripts/purge.js` beside the service) has its own, where the
   * service's pid is nobody — or itself, both being pid 1. Such a process took a live service's
   * lock over (and removed it at its exit). A lock from another space is judged by its age: its
   * holder keeps it fresh.
   */
  const canUnshare = process.platform === 'linux' && spawnSync('unshare', ['-pf', '--mount-proc', 'true']).status === 0;
  it.skipIf(!canUnshare)('a process in another pid namespace (another container on the volume) is refused too', async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-dirlock-')), 'pglite');
    dirs.push(path.dirname(dir));
    const held = await connect({ kind: 'pglite', dir });
    try {
      const other = spawnWithOutput('unshare', ['-pf', '--mount-proc', process.execPath, '--import', 'tsx', 'scripts/migrate.ts'], {
        cwd: root,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), DATABASE_URL: `pglite:${dir}` },
      });
      started.push(other.child);
      expect(await other.exited, other.output()).toBe(1);
      expect(other.output()).toContain(`is open in another process (pid ${process.pid} in another container, host or boot`);
      expect(existsSync(`${dir}.lock`), 'the holder’s lock is still there').toBe(true);
      await held.ping();
    } finally {
      await held.close();
    }
  }, 60_000);

  it('a lock from another pid space counts while its heartbeat is fresh, whatever its pid is here; once stale it is taken over', async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-dirlock-')), 'pglite');
    dirs.push(path.dirname(dir));
    const lock = `${dir}.lock`;
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // a pid nobody has here now
    writeFileSync(lock, `${gone}\nanother-boot/pid:[1]\n`);
    await expect(connect({ kind: 'pglite', dir })).rejects.toThrow(`is open in another process (pid ${gone} in another container, host or boot`);

    // Its holder stopped touching it (died there): past STALE_MS it is taken over, though the pid lives here.
    writeFileSync(lock, `${process.ppid}\nanother-boot/pid:[1]\n`);
    const old = new Date(Date.now() - STALE_MS - 1_000);
    utimesSync(lock, old, old);
    const database = await connect({ kind: 'pglite', dir });
    try {
      expect(readFileSync(lock, 'utf8').split('\n')[0]).toBe(String(process.pid));
      // This holder keeps its own lock fresh for the others to judge.
      utimesSync(lock, old, old);
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS + 1_000));
      expect(Date.now() - statSync(lock).mtimeMs).toBeLessThan(HEARTBEAT_MS + 1_000);
    } finally {
      await database.close();
    }
    expect(existsSync(lock)).toBe(false);
  }, 60_000);
});
