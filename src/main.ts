import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServices } from './app.js';
import { createApp, createHttpServer } from './http/express-app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { resolveGoogle } from './gmail/google-settings.js';
import { connect } from './db/connect.js';
import { LEASE_RELEASE_WAIT_MS, startJobs, STOP_GRACE_MS, type Jobs } from './jobs.js';
import { createLogger } from './logger.js';
import { settlesWithin } from './time.js';

/** Everything left after SIGTERM must be done by then (orchestrators kill at 10 s or less; we promise 5). */
const SHUTDOWN_DEADLINE_MS = 4_800;
/**
 * What the deadline keeps after the database's close for letting it go when it did not close
 * (ending its thread) and for the process's own exit: measured from the signal to the exit as
 * the parent sees it, a cut-off close at 4.75 s ended the process at 5.02 s.
 */
const DATABASE_LET_GO_MS = 250;

/**
 * The signals that stop the process gracefully. SIGHUP is what closing the terminal that runs
 * `npm start` sends (to npm and to this process, one process group): left to Node's default it
 * ended the process at once — held clicks and the buffer unwritten, unstarted sends not handed
 * back, the embedded database not closed (recovered from its WAL at the next start), the data
 * dir's lock left behind. No signal here reloads anything, so each one means "stop".
 */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Start: config → database (migrated) → app → listen (ROLE web/all) and jobs (ROLE worker/all); stop within 5 s on SIGINT/SIGTERM/SIGHUP. */
async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  if (config.generatedSecrets.length > 0) {
    logger.warn(
      { generated: config.generatedSecrets, file: `${config.dataDir}/secrets.json` },
      'development secrets in use, generated once into the data dir (and read from there since); set them in the environment for any real deployment',
    );
  }

  const database = await connect(config.database);
  await database.migrate();
  const google = await resolveGoogle(config);
  const deps = { config, database, logger, google };
  const services = createServices(deps);
  // P-18: the configured policy version and its disclosure are published (once, recorded) before anyone connects.
  await services.policyVersions.currentDisclosure();
  const serves = config.role !== 'worker';
  let server: Server | undefined;
  if (serves) {
    const app = createApp(deps, services);
    server = createHttpServer(app, services).listen(config.port, config.host);
    await new Promise<void>((resolve, reject) => {
      server!.once('listening', resolve);
      server!.once('error', reject);
    });
    if (google.sandbox && google.pushTopic) {
      // Sandbox mode: the sandbox stands in for Pub/Sub too, pushing watched mailboxes' changes here.
      const port = (server.address() as AddressInfo).port;
      google.sandbox.control.addPushSubscription({ topicName: google.pushTopic, endpoint: `http://127.0.0.1:${port}/webhooks/gmail`, audience: google.pushAudience });
    }
  }
  const jobs: Jobs | undefined = config.role !== 'web' ? startJobs({ services, config, logger, pushTopic: google.pushTopic }) : undefined;
  // The jobs' timers never hold the process open; a worker has no listening socket that would, so this does until SIGTERM.
  const keepAlive = serves ? undefined : setInterval(() => undefined, 3_600_000);

  const where = config.database.kind === 'pglite' ? `embedded PGlite in ${config.database.dir}` : 'PostgreSQL server';
  if (serves) console.log(`inboxtrail listening on http://localhost:${config.port} (public base URL ${config.publicBaseUrl})`);
  console.log(`role: ${config.role} (${[serves ? 'HTTP' : '', jobs ? 'sending, sync and scheduled jobs' : ''].filter(Boolean).join(' + ')})`);
  console.log(`database: ${where}, migrated`);
  console.log(
    google.sandbox
      ? `Gmail: no Google client configured, so Gmail runs against the built-in sandbox — read its mailboxes at ${google.sandbox.urls.inbox}`
      : `Gmail: Google OAuth client ${config.google.clientId} (API ${google.settings.endpoints.apiRootUrl})`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    clearInterval(keepAlive);
    const startedAt = Date.now();
    const left = () => Math.max(0, SHUTDOWN_DEADLINE_MS - (Date.now() - startedAt));
    // Should a step hang past the deadline anyway, the process still ends, and says so.
    setTimeout(() => {
      logger.error('shutdown did not finish in time; exiting with work abandoned to recovery');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS + 150).unref();
    // At once and together: stop accepting HTTP (in-flight requests get until the grace ends),
    // stop claiming work and hand unstarted sends back, let running jobs finish.
    const httpClosed = server
      ? new Promise<void>((resolve) => {
          server!.close(() => resolve());
          server!.closeIdleConnections();
        })
      : Promise.resolve();
    // No new hit comes in now: the held clicks (up to 10 s of them) are judged and written from
    // here on, beside the grace below, not after it (then ~1.2 s was left for them).
    services.tracking.beginShutdown();
    await Promise.all([
      settlesWithin(httpClosed, STOP_GRACE_MS).then(() => server?.closeAllConnections()),
      // A web process runs the syncs its push notifications start; a worker's jobs.stop waits for them itself.
      jobs ? jobs.stop({ graceMs: STOP_GRACE_MS }) : settlesWithin(services.sync.idle(), STOP_GRACE_MS),
    ]);
    if (!jobs) await services.sync.releaseLeases({ timeoutMs: LEASE_RELEASE_WAIT_MS }).catch(() => undefined);
    // The rest of the buffered tracking events are written before the database goes away (an
    // open PGlite worker would also keep the process alive forever); the log says what was lost.
    await services.tracking.close({ timeoutMs: Math.max(100, left() - 600) });
    await google.sandbox?.close();
    // The database closes with what is left: a statement still running on it (a long
    // maintenance VACUUM or ANALYZE, a rollup pass) cannot be cut short, and closing waits for
    // it. Past the deadline the engine is let go mid-statement, as a crash would (the next
    // start recovers it; only what was not committed is gone), and the stop says so.
    const closed = await database.close({ timeoutMs: Math.max(50, left() - DATABASE_LET_GO_MS) });
    if (closed === false) {
      logger.error({ ms: Date.now() - startedAt }, 'stopped, but the database did not close in time: a statement still running was cut off (the next start recovers it)');
      process.exit(1);
    }
    logger.info({ ms: Date.now() - startedAt }, 'stopped');
    // 0 whatever the signal: the stop finished (1: it did not, above and the hard exit).
    process.exit(0);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, () => void stop(signal));
}

main().catch((error: unknown) => {
  // Only the message: a driver error can quote a connection string with a password.
  console.error('inboxtrail failed to start:', error instanceof Error ? error.message.replace(/\/\/[^@\s]*@/g, '//***@') : 'unknown error');
  process.exit(1);
});
