import type { Request, RequestHandler } from 'express';
import type { Role } from '../db/schema.js';
import { AppError, ForbiddenError, UnauthorizedError } from '../errors.js';
import type { Access } from '../http/api-spec.js';
import type { AuthContext, AuthService } from './auth.service.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      auth?: AuthContext;
    }
  }
}

/** API keys beside sessions: how `Bearer itk_…` is told apart and checked, and what each route needs. */
export interface ApiKeyAuth {
  looksLikeApiKey(token: string): boolean;
  authenticate(key: string): Promise<AuthContext>;
  /** The registry's access for a method and path (src/http/api-spec.ts); undefined for an unlisted route. */
  accessOf(method: string, path: string): Access | undefined;
}

const scopeMissing = (message: string) => new AppError('api_key_scope_missing', 403, message);

/**
 * Every CRM route sits behind this: a valid bearer token of a current member, or an API key
 * whose scopes cover the route (fail closed: a route the registry does not list, or one for
 * sessions only, refuses every key).
 */
export function requireAuth(auth: AuthService, apiKeys?: ApiKeyAuth): RequestHandler {
  const authenticatedHere = new WeakSet<object>();
  return async (req, _res, next) => {
    // Already authenticated by this guard for this request (a path that must know its caller
    // before it reads a large body); an auth set by anything else counts for nothing here.
    if (authenticatedHere.has(req)) return next();
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) throw new UnauthorizedError('unauthorized', 'An Authorization: Bearer token is required');
    const token = match[1]!;
    if (apiKeys?.looksLikeApiKey(token)) {
      const context = await apiKeys.authenticate(token);
      const access = apiKeys.accessOf(req.method, new URL(req.originalUrl, 'http://local').pathname);
      if (access === undefined || access === 'public' || access === 'session') throw scopeMissing('API keys cannot call this route');
      if (!context.scopes?.includes(access) && !context.scopes?.includes('admin')) throw scopeMissing(`This route needs an API key with the ${access} scope`);
      req.auth = { ...context, requestId: String(req.id) };
    } else {
      req.auth = { ...(await auth.authenticate(token)), requestId: String(req.id) };
    }
    authenticatedHere.add(req);
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
