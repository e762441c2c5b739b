/**
 * Other tenants' latency while one tenant imports 100,000 contacts (issue 9 part 7), on
 * the embedded database (PGlite on disk, the `npm start` default).
 *
 * Tenant B (1,000 contacts) reads in a closed loop — 4 concurrent clients alternating
 * `GET /api/contacts?limit=50` and `GET /api/me` — first alone for BENCH_BASELINE_SECONDS
 * (the baseline), then while tenant A uploads a 100,000-row CSV (chunked, no
 * Content-Length) to `POST /api/contacts/import`. Prints B's p50/p99/max for both phases
 * and the import's duration. Everything runs in this one process, the load too: the event
 * loop stalls the import causes are exactly what B would feel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { createServices } from '../../src/app.js';
import { createApp, createHttpServer } from '../../src/http/express-app.js';
import { createMemoryMailer, lastSignupCode } from '../../src/auth/account-mail.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';

const ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 100_000);
const BASELINE_SECONDS = Number(process.env.BENCH_BASELINE_SECONDS ?? 5);
const CLIENTS = 4;

const dir = mkdtempSync(path.join(tmpdir(), 'inboxtrail-bench-import-'));
const config = loadConfig({
  NODE_ENV: 'test',
  JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-000000',
  TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 3).toString('base64')}`,
  TRACKING_SECRET: 'v1:bench-tracking-secret-long-enough-000000',
  SUPPRESSION_HASH_KEY: 'bench-suppression-hash-key-long-enough-000000',
  PUBLIC_BASE_URL: 'http://127.0.0.1:1',
  SIGNUP_MAX_PER_ADDRESS: '1000',
  LOG_LEVEL: 'silent',
});
const database = await connect({ kind: 'pglite', dir: path.join(dir, 'pglite') });
await database.migrate();
const google = await resolveGoogle(config, { autoApprove: true, sandboxPort: 0 });
const accountMailer = createMemoryMailer();
const deps = { config, database, logger: createLogger('silent'), google, accountMailer };
const services = createServices(deps);
const server = createHttpServer(createApp(deps, services), services).listen(0, '127.0.0.1');
await new Promise<void>((resolve) => server.once('listening', () => resolve()));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function tenant(email: string) {
  await fetch(`${base}/api/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: 'bench password 123', workspaceName: email }),
  });
  const res = await fetch(`${base}/api/auth/signup/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: lastSignupCode(accountMailer.outbox, email) }),
  });
  return (await res.json()) as { token: string; workspace: { id: string } };
}

const importer = await tenant('importer@acme.test');
const reader = await tenant('reader@acme.test');
await database.db.execute(
  sql`insert into contacts (workspace_id, email, first_name) select ${reader.workspace.id}::uuid, 'r' || g || '@reader.test', 'R' || g from generate_series(1, 1000) g`,
);

/** B's closed loop until `until()` is true; latencies in ms. */
async function readLoad(until: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  const paths = ['/api/contacts?limit=50', '/api/me'];
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = client; !until(); i += 1) {
        const started = performance.now();
        const res = await fetch(`${base}${paths[i % 2]}`, { headers: { authorization: `Bearer ${reader.token}` } });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`reader got ${res.status}`);
        latencies.push(performance.now() - started);
      }
    }),
  );
  return latencies;
}

function summary(latencies: number[]) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1);
  return `${sorted.length} requests, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`;
}

function csvStream(rows: number): ReadableStream<Uint8Array> {
  let i = 0;
  const encoder = new TextEncoder();
  return new ReadableStream({
    pull(controller) {
      if (i === 0) controller.enqueue(encoder.encode('email,first name,last name,company\n'));
      if (i >= rows) return controller.close();
      const lines: string[] = [];
      for (const end = Math.min(rows, i + 2000); i < end; i += 1) lines.push(`person${i}@import.test,First${i},Last${i},Company ${i % 97}`);
      controller.enqueue(encoder.encode(`${lines.join('\n')}\n`));
    },
  });
}

console.log(`node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}, ${ROWS} rows, PGlite on disk`);
const baselineEnd = performance.now() + BASELINE_SECONDS * 1000;
console.log(`baseline (no import):   ${summary(await readLoad(() => performance.now() > baselineEnd))}`);

let importDone = false;
const importStarted = performance.now();
const upload = fetch(`${base}/api/contacts/import`, {
  method: 'POST',
  headers: { 'content-type': 'text/csv', authorization: `Bearer ${importer.token}` },
  body: csvStream(ROWS),
  duplex: 'half',
} as RequestInit).then(async (res) => {
  const report = (await res.json()) as { created?: number; error?: unknown };
  importDone = true;
  return { status: res.status, report, seconds: (performance.now() - importStarted) / 1000 };
});
const during = await readLoad(() => importDone);
const result = await upload;
console.log(`during the import:      ${summary(during)}`);
console.log(`import: HTTP ${result.status}, ${result.report.created ?? JSON.stringify(result.report.error)} created in ${result.seconds.toFixed(1)} s`);

server.closeAllConnections();
server.close();
await services.tracking.close({ timeoutMs: 2_000 });
await google.sandbox?.close();
await database.close();
rmSync(dir, { recursive: true, force: true });
