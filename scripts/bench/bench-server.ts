/**
 * What the HTTP benchmarks share: the real server (createServices + createHttpServer) over a
 * fresh on-disk PGlite or a database of its own on the server at `serverUrl`, and one
 * autocannon run in a child process (load.mjs), so that the load generator never shares the
 * measured thread.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createServices } from '../../src/app.js';
import { createApp, createHttpServer } from '../../src/http/express-app.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
import { PIXEL_GIF } from '../../src/tracking/tracking-handler.js';
import { serverDatabase } from './common.js';

const LOADER = path.join(import.meta.dirname, 'load.mjs');
export const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

export interface LoadResult {
  rps: number;
  /** CPU time (user + system) this process spent during the run, per answered request, in µs. */
  cpuPerRequest?: number;
  p50: number;
  p99: number;
  /** Responses received. */
  answered: number;
  /** Requests sent (some may still have been in flight when the run stopped). */
  sent: number;
  /** Responses that were neither the GIF (200) nor the redirect (302). */
  unexpected: number;
  errors: number;
}

/** One autocannon run in a child process (load.mjs); JSON result. */
export function load(url: string, options: { seconds: number; connections: number; rate?: number; paths?: string[] }): Promise<LoadResult> {
  const spec = JSON.stringify({ url, paths: options.paths, seconds: options.seconds, connections: options.connections, rate: options.rate, userAgent: UA });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOADER], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.end(spec);
    let out = '';
    child.stdout.on('data', (chunk) => (out += String(chunk)));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load generator exited with ${code}`))));
  });
}

/** The baseline: node:http answering the same bytes and headers as the pixel and the click (to `target`), nothing else. */
export function bareServer(target: string): Server {
  const pixelHeaders = { 'Content-Type': 'image/gif', 'Content-Length': '43', 'Cache-Control': 'no-store, private', Expires: '0', 'X-Content-Type-Options': 'nosniff' };
  const redirectHeaders = { Location: target, 'Cache-Control': 'no-store', 'X-Robots-Tag': 'noindex', 'Content-Length': '0' };
  return createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/t/o/')) {
      res.writeHead(200, pixelHeaders);
      res.end(PIXEL_GIF);
    } else if (url.startsWith('/t/c/')) {
      res.writeHead(302, redirectHeaders);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
}

export const listen = (server: Server) =>
  new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));

/** The real server on a scratch database; `stop()` closes everything and drops the database. */
export async function startBenchServer(serverUrl: string | undefined) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-bench-'));
  const server = serverUrl ? await serverDatabase(serverUrl, 'inboxtrail-bench') : undefined;
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATA_DIR: dataDir,
    DATABASE_URL: server ? server.url : `pglite:${path.join(dataDir, 'pglite')}`,
    JWT_SECRET: 'bench-jwt-secret-that-is-long-enough-0123456789',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 7).toString('base64')}`,
    TRACKING_SECRET: 'v1:bench-tracking-secret-that-is-long-enough-01',
    SUPPRESSION_HASH_KEY: 'bench-suppression-hash-key-long-enough-000000',
    PUBLIC_BASE_URL: 'http://127.0.0.1:1',
  });
  const database = await connect(config.database);
  await database.migrate();
  const logger = createLogger(config.logLevel);
  const google = await resolveGoogle(config, { sandboxPort: 0 });
  const deps = { config, database, logger, google };
  const services = createServices(deps);
  const http = createHttpServer(createApp(deps, services), services);
  const url = await listen(http);
  // What `npm start`'s worker does to PGlite every 30 s (src/jobs.ts `embedded-checkpoint`); BENCH_CHECKPOINTS=0: not.
  let checkpoints = 0;
  let longestCheckpointMs = 0;
  const checkpointing =
    database.kind === 'pglite' && process.env.BENCH_CHECKPOINTS !== '0'
      ? setInterval(() => {
          const asked = performance.now();
          services.embeddedMaintenance
            .checkpoint()
            .then((done) => {
              if (!done) return;
              checkpoints += 1;
              longestCheckpointMs = Math.max(longestCheckpointMs, performance.now() - asked);
            })
            .catch(() => undefined); // a check racing stop() at the end of a run
        }, 30_000)
      : undefined;
  return {
    database,
    services,
    url,
    label: server ? 'PostgreSQL server (same machine)' : 'PGlite on disk (embedded, on its own thread)',
    /** tracking_events_dropped_total, all reasons. */
    async dropped(): Promise<number> {
      const metrics = await services.metrics.registry.getSingleMetricAsString('tracking_events_dropped_total');
      return [...metrics.matchAll(/tracking_events_dropped_total\{[^}]*\} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    },
    /** Checkpoints the embedded database's job took so far and the longest (undefined: no job here). */
    checkpoints: () => (checkpointing ? { count: checkpoints, longestMs: Math.round(longestCheckpointMs) } : undefined),
    async stop(): Promise<void> {
      clearInterval(checkpointing);
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await services.tracking.close();
      await google.sandbox?.close();
      await database.close();
      await server?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
