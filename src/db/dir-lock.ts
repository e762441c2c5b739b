import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * An embedded (PGlite) data dir belongs to one process. PGlite takes no lock of its own: a
 * second `npm start` (or `npm run migrate`, `purge`, `rotate-keys`) on the same dir booted,
 * each process kept its own copy in memory, and whichever wrote last won on disk — the other's
 * accounts were gone after a restart, without a word. The lock is a file beside the dir
 * (`<dir>.lock`, never inside it: initdb wants an empty dir) holding the owner's pid; one
 * left by a process that died (kill -9) is taken over. Two processes taking over the same
 * stale lock at the same instant could both pass; that needs a crash and two starts at once.
 */

const heldHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in the lock; 'starting' while a lock only just created has no pid written yet; undefined when gone or unusable. */
function holderOf(file: string): number | 'starting' | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0) return pid;
    return Date.now() - statSync(file).mtimeMs < 5_000 ? 'starting' : undefined;
  } catch {
    return undefined; // removed meanwhile: try again
  }
}

/** Takes the dir's lock or throws naming who holds it; the returned function releases it (once). */
export function lockDataDir(dir: string): () => void {
  const resolved = path.resolve(dir);
  const file = `${resolved}.lock`;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      heldHere.add(resolved);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        heldHere.delete(resolved);
        rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = holderOf(file);
    // Our own pid in a lock we did not take is a previous life's (a container's pid 1 restarting).
    const held = holder === 'starting' || (holder !== undefined && (holder === process.pid ? heldHere.has(resolved) : alive(holder)));
    if (held) {
      throw new Error(
        `the embedded database in ${dir} is open in another process (pid ${holder}): PGlite belongs to one process, ` +
          'so stop that one first (another npm start?), or use a PostgreSQL server (DATABASE_URL=postgres://…) for several',
      );
    }
    rmSync(file, { force: true });
  }
  throw new Error(`could not lock the embedded database in ${dir} (${file} keeps coming back)`);
}
