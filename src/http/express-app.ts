import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import { requireAuth } from '../auth/auth.middleware.js';
import { authRoutes, publicAuthRoutes } from '../auth/auth.routes.js';
import { campaignsRoutes } from '../campaigns/campaigns.routes.js';
import type { Config } from '../config.js';
import type { TrustProxy } from '../tracking/ip.js';
import { vendorAssets } from '../web/vendor-assets.js';
import { trackingRoutes } from '../tracking/tracking.routes.js';
import { contactsRoutes } from '../contacts/contacts.routes.js';
import { gmailRoutes } from '../gmail/gmail.routes.js';
import { pushRoutes } from '../gmail/push.routes.js';
import { messagesRoutes } from '../messages/messages.routes.js';
import { accountClosureRoutes } from '../privacy/account-closure.routes.js';
import { suppressionRoutes } from '../suppression/suppression.routes.js';
import { unsubscribeErrorPage, unsubscribeRoutes } from '../suppression/unsubscribe.routes.js';
import { complianceRoutes } from '../privacy/compliance.routes.js';
import { grantsRoutes } from '../privacy/grants.routes.js';
import { NotFoundError, errorMiddleware } from '../errors.js';
import { privacyRoutes } from '../privacy/privacy.routes.js';
import { metricsMiddleware, metricsRoute } from './metrics.js';
import { redactHeaders, redactUrl, serializeError } from '../logger.js';
import { rejectBadText } from './text.js';
import { apiKeysRoutes } from '../api-keys/api-keys.routes.js';
import { looksLikeApiKey } from '../api-keys/api-keys.service.js';
import { createAccessLookup } from './api-spec.js';
import { API_ROUTES, API_WEBHOOKS } from './api-routes.js';
import { buildOpenApiDocument, openApiRoutes } from './openapi.js';
import { idempotentRoute } from '../idempotency/idempotency.middleware.js';
import { webhooksRoutes } from '../webhooks/webhooks.routes.js';
import { webCookies } from '../web/cookies.js';
import { contentSecurityPolicy } from '../web/csp.js';
import { webErrorPage, type WebContext } from '../web/web.middleware.js';
import { WEB_PATHS, webRoutes } from '../web/web.routes.js';
import { APP_PAGE_GROUPS } from '../web/pages.js';
import { isAppReadableForm, isOneClickPath, isWebAppPath, refuseUnacceptedFieldNames } from './form-body.js';
import { createServices, type AppDeps, type Services } from '../app.js';

/*
 * The HTTP side of the app: the Express app over the services of the composition root
 * (src/app.ts) — middleware, routes, the one error mapping — and the server that answers
 * tracking URLs before Express.
 */

const REQUEST_ID = /^[A-Za-z0-9._-]{1,100}$/;

/** Web cookies are Secure (and `__Host-`) in production and whenever the public URL is https. */
export const webCookiesSecure = (config: Config) => config.env === 'production' || config.publicBaseUrl.startsWith('https:');

/** TRUST_PROXY as Express means it: a hop count, true/false, or addresses and subnet names. */
export function trustProxySetting(value: string): number | boolean | string {
  if (/^\d+$/.test(value)) return Number(value);
  if (value === 'true' || value === 'false') return value === 'true';
  return value;
}

/** The HTTP app over those services: middleware, routes, and the one error mapping. */
export function createApp(deps: AppDeps, services: Services = createServices(deps)): Express {
  const { config, database, logger } = deps;
  const { auth, contacts, mailboxes, messages, push, messageContent } = services;
  const { metrics } = services;

  const app = express();
  app.set('trust proxy', trustProxySetting(config.trustProxy));
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
      serializers: {
        // A Referer is the URL of the page before (a search, a filter by address, a token path), an
        // Origin may carry a user and password: judged like the request's own URL.
        req: (req: { url: string; query?: unknown; headers?: Record<string, unknown> }) => ({
          ...req,
          url: redactUrl(req.url),
          query: undefined,
          headers: req.headers && redactHeaders(req.headers),
        }),
        // The status, and a redirect's Location (redacted: it may carry what the request's URL did,
        // sign-in's `next`, a token path). Not the other response headers: the same on every
        // answer (a page's CSP alone is a kilobyte), they buried each request's line.
        res: (res: { statusCode?: number; headers?: Record<string, unknown> }) =>
          typeof res.headers?.location === 'string' ? { statusCode: res.statusCode, headers: { location: redactUrl(res.headers.location) } } : { statusCode: res.statusCode },
        // pino-http installs its own error serializer unless given one: ours drops query parameters.
        err: serializeError,
      },
    }),
  );
  app.use(metricsMiddleware(metrics));
  // Strict CSP for every page: scripts and styles only as files from our own origin, nothing inline (src/web/csp.ts).
  app.use(helmet({ contentSecurityPolicy: contentSecurityPolicy(webCookiesSecure(config)) }));
  // A session token or an API key; a key's scopes are checked against the route registry.
  const authenticated = requireAuth(auth, { looksLikeApiKey, authenticate: services.apiKeys.authenticate, accessOf: createAccessLookup(API_ROUTES) });
  // 1:1 mail may carry up to Gmail's 35 MB; every other JSON body is small. Every /api/messages
  // route needs a caller, so the caller is known before 35 MB are parsed (an anonymous client
  // could make the server parse them for a 401); the routes' own guard then lets it pass.
  app.use('/api/messages', authenticated, express.json({ limit: '36mb' }));
  app.use(express.json({ limit: '1mb' }));
  // Forms in UTF-8 or ISO-8859-1; another charset is left to the route (http/form-body.ts), not a 415.
  // The web app's own forms (/app) are read by its router once the browser is signed in (larger:
  // they carry whole mail bodies; web.routes.ts).
  app.use(express.urlencoded({ extended: false, limit: '100kb', type: (req) => isAppReadableForm(req) && !isWebAppPath(req.url), verify: refuseUnacceptedFieldNames }));
  // One rule for every string a client sends: no NUL, no lone surrogate (400 invalid_text) —
  // but a one-click opt-out (POST /u/…) skips a bad field itself rather than lose the opt-out
  // (http/form-body.ts readFormFields `oneClick`; its route reads nothing from the query).
  app.use(rejectBadText({ except: (req) => req.method === 'POST' && isOneClickPath(req.path) }));

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
  app.get('/metrics', metricsRoute(metrics, config.metricsToken));

  app.use('/webhooks', pushRoutes(push));

  // Each feature router guards its own path prefixes, so that an unknown /api path
  // is a 404 for everyone rather than a 401 that hides it (under /api/messages, whose caller is
  // known before its large bodies are read, an anonymous caller gets the 401 first).
  const idempotent = idempotentRoute(services.idempotency);
  app.use('/api', publicAuthRoutes(auth));
  app.use('/api', openApiRoutes(buildOpenApiDocument(API_ROUTES, API_WEBHOOKS, config.publicBaseUrl)));
  app.use(
    '/api',
    authRoutes(auth, authenticated),
    contactsRoutes(contacts, authenticated),
    gmailRoutes(mailboxes, authenticated, config.publicBaseUrl.startsWith('https:')),
    messagesRoutes(messages, messageContent, authenticated, idempotent),
    campaignsRoutes(services.campaigns, authenticated, idempotent),
    suppressionRoutes(services.suppressions, authenticated),
    trackingRoutes(services.tracking.stats, authenticated, services.results),
    apiKeysRoutes(services.apiKeys, authenticated),
    grantsRoutes(services.grants, authenticated),
    complianceRoutes(services.compliance, authenticated),
    privacyRoutes(services.privacyExports, services.legalRequests, authenticated),
    accountClosureRoutes(services.accountClosure, authenticated),
    webhooksRoutes(services.webhooks, authenticated),
  );
  app.use('/api', (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.baseUrl}${req.path}`, 'route_not_found')));
  // The recipient's pages (/u, /p): public, the token in the URL is the credential.
  app.use(unsubscribeRoutes(services.suppressions));

  // The web app for CRM users (src/web/): cookie sessions with CSRF tokens; /api above never reads that cookie.
  const web: WebContext = {
    auth,
    webSessions: services.webSessions,
    cookies: webCookies(webCookiesSecure(config)),
    secureCookies: webCookiesSecure(config),
    sandboxInboxUrl: deps.google.sandbox?.urls.inbox,
    logger,
    services,
    config,
  };
  // Chart code for the results pages, from node_modules on our own origin (src/web/vendor-assets.ts).
  app.use(vendorAssets());
  app.use(webRoutes(web, APP_PAGE_GROUPS));

  // A path or method nobody serves: a 404 with a code, as under /api, in the page of its part of
  // the site below (the recipient's page, the web app's, JSON elsewhere). The path is not echoed:
  // under /u and /p it holds a recipient's token.
  app.use((_req, _res, next) => next(new NotFoundError('Route', 'route_not_found')));
  // Errors raised before the router (body parser 413/415, invalid_text) still get the recipient's HTML page.
  app.use(['/u', '/p'], unsubscribeErrorPage);
  app.use(WEB_PATHS, webErrorPage(web));
  app.use(errorMiddleware(logger));
  return app;
}

/**
 * The HTTP server: tracking URLs (/t/…) are answered in the request listener itself —
 * the pixel and the redirect must stay fast and never wait for Express's router — and
 * everything else goes to the Express app. main.ts and the test app both use this.
 */
export function createHttpServer(app: Express, services: Services): Server {
  const handleTracking = services.tracking.createHandler(app.get('trust proxy fn') as TrustProxy);
  return createServer((req, res) => {
    if (!handleTracking(req, res)) app(req, res);
  });
}

