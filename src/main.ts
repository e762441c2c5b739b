import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, createHttpServer, createServices } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { resolveGoogle } from './gmail/google-settings.js';
import { connect } from './db/connect.js';
import { startJobs } from './jobs.js';
import { createLogger } from './logger.js';

/** Start: config → database (migrated) → app → listen; stop cleanly on SIGINT/SIGTERM. */
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
      'development secrets were generated and stored in the data dir; set them in the environment for any real deployment',
    );
  }

  const database = await connect(config.database);
  await database.migrate();
  const google = await resolveGoogle(config);
  const deps = { config, database, logger, google };
  const services = createServices(deps);
  const app = createApp(deps, services);
  const server: Server = createHttpServer(app, services).listen(config.port, config.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  if (google.sandbox && google.pushTopic) {
    // Sandbox mode: the sandbox stands in for Pub/Sub too, pushing watched mailboxes' changes here.
    const port = (server.address() as AddressInfo).port;
    google.sandbox.control.addPushSubscription({ topicName: google.pushTopic, endpoint: `http://127.0.0.1:${port}/webhooks/gmail`, audience: google.pushAudience });
  }
  const jobs = startJobs({ services, config, logger, pushTopic: google.pushTopic });

  const where = config.database.kind === 'pglite' ? `embedded PGlite in ${config.database.dir}` : 'PostgreSQL server';
  console.log(`inboxtrail listening on http://localhost:${config.port} (public base URL ${config.publicBaseUrl})`);
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
    // Stop accepting, give in-flight requests a moment, then close the database:
    // an open PGlite would keep the process alive forever.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const deadline = setTimeout(() => server.closeAllConnections(), 5_000);
    await closed;
    clearTimeout(deadline);
    await jobs.stop();
    // Buffered tracking events are written before the database goes away.
    await services.tracking.close();
    await google.sandbox?.close();
    await database.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  // Only the message: a driver error can quote a connection string with a password.
  console.error('inboxtrail failed to start:', error instanceof Error ? error.message.replace(/\/\/[^@\s]*@/g, '//***@') : 'unknown error');
  process.exit(1);
});
