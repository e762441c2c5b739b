import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import { loginRateLimit, requireAuth } from './auth/auth.middleware.js';
import { createAuthRepo } from './auth/auth.repo.js';
import { authRoutes, publicAuthRoutes } from './auth/auth.routes.js';
import { createAuthService } from './auth/auth.service.js';
import { createSessionTokens } from './auth/sessions.js';
import type { Config } from './config.js';
import { createContactsRepo } from './contacts/contacts.repo.js';
import { contactsRoutes } from './contacts/contacts.routes.js';
import { createContactsService } from './contacts/contacts.service.js';
import type { Database } from './db/connect.js';
import { NotFoundError, errorMiddleware } from './errors.js';
import { createMetrics, metricsMiddleware } from './http/metrics.js';
import type { Logger } from './logger.js';

export interface AppDeps {
  config: Config;
  database: Database;
  logger: Logger;
  now?: () => Date;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,100}$/;

/**
 * The one composition root: builds every repo, service and router from its
 * dependencies by plain constructor injection, and wires them into one Express app.
 */
export function createApp(deps: AppDeps): Express {
  const { config, database, logger } = deps;
  const { db } = database;

  const sessions = createSessionTokens(config.jwt);
  const auth = createAuthService({ repo: createAuthRepo(db), sessions, config, now: deps.now });
  const contacts = createContactsService({ repo: createContactsRepo(db), policyVersion: config.policyVersion });
  const metrics = createMetrics();

  const app = express();
  app.set('trust proxy', config.trustProxy);
  app.disable('x-powered-by');
  app.use(
    pinoHttp({
      logger,
      // A caller's request id is kept when it is sane, so a trace crosses services.
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/metrics' },
    }),
  );
  app.use(metricsMiddleware(metrics));
  app.use(helmet());
  app.use(express.json({ limit: '1mb' }));
  app.use(express.urlencoded({ extended: false, limit: '100kb' }));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await database.ping();
      res.json({ status: 'ready', database: 'ok' });
    } catch {
      res.status(503).json({ status: 'unavailable', database: 'unreachable' });
    }
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  // Each feature router guards its own path prefixes, so that an unknown /api path
  // is a 404 for everyone rather than a 401 that hides it.
  const authenticated = requireAuth(auth);
  app.use('/api', publicAuthRoutes(auth, loginRateLimit(config.login)));
  app.use('/api', authRoutes(auth, authenticated), contactsRoutes(contacts, authenticated));
  app.use('/api', (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.baseUrl}${req.path}`, 'route_not_found')));

  app.use(errorMiddleware(logger));
  return app;
}
