import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** A real child process with everything it prints collected, and its exit code. */
export function spawnWithOutput(command: string, args: string[], options: SpawnOptions): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Polls `/healthz` on 127.0.0.1 every 250 ms until it answers (a booting service), or gives up after `tries`. */
export async function waitForHealth(port: number, tries = 240): Promise<Response | undefined> {
  for (let i = 0; i < tries; i += 1) {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (health) return health;
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}
