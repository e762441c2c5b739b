import type { Request, RequestHandler } from 'express';
import type { Role } from '../db/schema.js';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import type { AuthContext, AuthService } from './auth.service.js';

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
    req.auth = { ...(await auth.authenticate(match[1]!)), requestId: String(req.id) };
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
