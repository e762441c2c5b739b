import type { Request, RequestHandler } from 'express';
import { rateLimit, ipKeyGenerator } from 'express-rate-limit';
import type { Role } from '../db/schema.js';
import { ForbiddenError, TooManyRequestsError, UnauthorizedError } from '../errors.js';
import type { AuthContext, AuthService } from './auth.service.js';
import { normalizeLoginEmail } from './auth.service.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      auth?: AuthContext;
    }
  }
}

/** Every CRM route sits behind this: a valid bearer token of a current member. */
export function requireAuth(auth: AuthService): RequestHandler {
  return async (req, _res, next) => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) throw new UnauthorizedError('unauthorized', 'An Authorization: Bearer token is required');
    req.auth = await auth.authenticate(match[1]!);
    next();
  };
}

export function requireRole(...roles: Role[]): RequestHandler {
  return (req, _res, next) => {
    if (!req.auth || !roles.includes(req.auth.role)) throw new ForbiddenError();
    next();
  };
}

/** The caller of an authenticated route; requireAuth has run before any handler that asks. */
export function authOf(req: Request): AuthContext {
  if (!req.auth) throw new UnauthorizedError();
  return req.auth;
}

/**
 * Counts failed logins per (client address, email): after `maxFailures` inside the
 * window the next attempt is refused with 429 before the password is even checked.
 * Successful logins do not count.
 */
export function loginRateLimit(options: { maxFailures: number; windowSeconds: number }): RequestHandler {
  return rateLimit({
    windowMs: options.windowSeconds * 1000,
    limit: options.maxFailures,
    skipSuccessfulRequests: true,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    keyGenerator: (req) => {
      const email = typeof req.body?.email === 'string' ? normalizeLoginEmail(req.body.email) : '';
      return `${ipKeyGenerator(req.ip ?? 'unknown')}|${email}`;
    },
    handler: (_req, _res, next, opts) => {
      next(new TooManyRequestsError('Too many failed logins; try again later', Math.ceil(opts.windowMs / 1000)));
    },
  });
}
