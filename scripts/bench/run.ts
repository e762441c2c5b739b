/**
 * `npm run bench` runs every benchmark; `npm run bench -- tracking campaign` picks some.
 * Each runs in its own process, one after the other, so that none measures another's heap
 * or timers. Benchmarks print figures; they are not tests.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const ALL = ['tracking', 'campaign', 'preflight', 'launch', 'import', 'signals', 'stats', 'ingest', 'sustained', 'claim-steps', 'plans', 'cancel', 'embedded-wal'];
const chosen = process.argv.slice(2).filter((arg) => arg !== '--');
const names = chosen.length > 0 ? chosen : ALL;

for (const name of names) {
  const file = path.join(here, `${name}.ts`);
  if (!existsSync(file)) {
    console.error(`no benchmark named ${name} (have: ${ALL.join(', ')})`);
    process.exit(2);
  }
}

for (const name of names) {
  console.log(`\n=== bench: ${name} ===`);
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(here, `${name}.ts`)], { cwd: root, stdio: 'inherit' });
    child.once('exit', resolve);
  });
  if (code !== 0) {
    console.error(`bench ${name} failed (exit ${code})`);
    process.exitCode = 1;
  }
}
