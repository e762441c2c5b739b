import { closeSync, openSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

/**
 * An embedded (PGlite) data dir belongs to one process. PGlite takes no lock of its own: a
 * second `npm start` (or `npm run migrate`, `purge`, `rotate-keys`) on the same dir booted,
 * each process kept its own copy in memory, and whichever wrote last won on disk — the other's
 * accounts were gone after a restart, without a word. The lock is a file beside the dir
 * (`<dir>.lock`, never inside it: initdb wants an empty dir) holding the owner's pid and the pid
 * space that pid means something in; one left by a process that died (kill -9) is taken over.
 *
 * A pid is only a process in its own pid space: a second container on the same volume (`docker
 * run … scripts/purge.js` beside the service) has its own, where the service's pid is nobody
 * (or itself: both are pid 1) — it took a live service's lock over. So a lock from another space
 * (another container, host or boot) is judged by its age instead: its holder touches it every
 * HEARTBEAT_MS, and it is taken over once STALE_MS old. Two processes taking over the same stale
 * lock at the same instant could both pass; that needs a crash and two starts at once.
 */

export const HEARTBEAT_MS = 5_000;
export const STALE_MS = 30_000;
/** A lock only just created has no pid written yet for this long. */
const STARTING_MS = 5_000;

const heldHere = new Set<string>();

/** Where a pid names a process: this boot and pid namespace (Linux), else this host. */
function pidSpaceOf(): string {
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}/${readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    return `host:${hostname()}`;
  }
}
const ownSpace = pidSpaceOf();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

type Holder = { pid: number; space: string | undefined; ageMs: number } | 'starting';

/** Who the lock names; 'starting' while one only just created has no pid yet; undefined when gone or unusable. */
function holderOf(file: string): Holder | undefined {
  try {
    const ageMs = Date.now() - statSync(file).mtimeMs;
    const [pidLine, space] = readFileSync(file, 'utf8').split('\n');
    const pid = Number(pidLine?.trim());
    if (Number.isInteger(pid) && pid > 0) return { pid, space: space?.trim() || undefined, ageMs };
    return ageMs < STARTING_MS ? 'starting' : undefined;
  } catch {
    return undefined; // removed meanwhile: try again
  }
}

/** Whether the lock's holder may still have the dir open. */
function stillHeld(holder: Holder, resolved: string): boolean {
  if (holder === 'starting') return true;
  // Another pid space: the pid cannot be asked about here; the holder's heartbeat says whether it lives.
  if (holder.space !== undefined && holder.space !== ownSpace) return holder.ageMs < STALE_MS;
  // Our own pid in a lock we did not take is a previous life's (a container's pid 1 restarting).
  return holder.pid === process.pid ? heldHere.has(resolved) : alive(holder.pid);
}

function refusal(dir: string, file: string, holder: Holder): Error {
  const who =
    holder === 'starting'
      ? 'a process starting now'
      : holder.space !== undefined && holder.space !== ownSpace
        ? `pid ${holder.pid} in another container, host or boot; ${file} is taken over once ${STALE_MS / 1000} s pass without its heartbeat`
        : `pid ${holder.pid}`;
  return new Error(
    `the embedded database in ${dir} is open in another process (${who}): PGlite belongs to one process, ` +
      'so stop that one first (another npm start?), or use a PostgreSQL server (DATABASE_URL=postgres://…) for several',
  );
}

/** Takes the dir's lock or throws naming who holds it; the returned function releases it (once). */
export function lockDataDir(dir: string): () => void {
  const resolved = path.resolve(dir);
  const file = `${resolved}.lock`;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid}\n${ownSpace}\n`);
      closeSync(fd);
      heldHere.add(resolved);
      // The lock's age is what a process in another pid space judges it by.
      const heartbeat = setInterval(() => {
        const now = new Date();
        try {
          utimesSync(file, now, now);
        } catch {
          // removed by hand: nothing left to keep fresh
        }
      }, HEARTBEAT_MS);
      heartbeat.unref();
      let released = false;
      return () => {
        if (released) return;
        released = true;
        clearInterval(heartbeat);
        heldHere.delete(resolved);
        rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = holderOf(file);
    if (holder && stillHeld(holder, resolved)) throw refusal(dir, file, holder);
    rmSync(file, { force: true });
  }
  throw new Error(`could not lock the embedded database in ${dir} (${file} keeps coming back)`);
}
