import express, { type Request, type Response, type Router } from 'express';
import { queryString, sendGoogleError, sleep, trackCall, type SandboxContext } from './context.js';
import { OAuthError } from './google-errors.js';
import type { AuthorizationRequest } from './oauth.js';
import { consentPage, oauthErrorPage } from './pages.js';
import { MailStoreError, type MailboxKind } from './store.js';

/**
 * accounts.google.com and oauth2.googleapis.com, as far as google-auth-library's
 * OAuth2Client goes: consent (`/o/oauth2/v2/auth`), `/token`, `/revoke`,
 * `/tokeninfo`, userinfo, and the signing certs.
 */

export const OAUTH_PATHS = {
  authorize: '/o/oauth2/v2/auth',
  decision: '/o/oauth2/v2/auth/decision',
  token: '/token',
  revoke: '/revoke',
  tokenInfo: '/tokeninfo',
  userInfo: '/oauth2/v3/userinfo',
  pemCerts: '/oauth2/v1/certs',
  jwkCerts: '/oauth2/v3/certs',
} as const;

const DEFAULT_MAILBOX = 'sandbox.user@example.com';

/** Only string fields: a form or JSON body as the OAuth endpoints read it. */
function stringFields(body: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (body && typeof body === 'object') {
    for (const [key, value] of Object.entries(body)) if (typeof value === 'string') out[key] = value;
  }
  return out;
}

function redirectWith(res: Response, redirectUri: string, params: Record<string, string | undefined>): void {
  const url = new URL(redirectUri);
  for (const [key, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(key, value);
  res.redirect(302, url.toString());
}

function showError(res: Response, status: number, error: string, description: string): void {
  res.status(status).type('html').send(oauthErrorPage(error, description));
}

function isKind(value: unknown): value is MailboxKind {
  return value === 'workspace' || value === 'consumer';
}

export function oauthRoutes(ctx: SandboxContext): Router {
  const router = express.Router();
  const forms = [express.urlencoded({ extended: false, limit: '100kb' }), express.json({ limit: '100kb' })];

  function latestMailbox(): string | undefined {
    const all = ctx.store.list();
    return all[all.length - 1]?.email;
  }

  function approve(res: Response, request: AuthorizationRequest, email: string, kind?: MailboxKind): void {
    try {
      const { code, scopes } = ctx.oauth.approve(request, email, kind);
      redirectWith(res, request.redirectUri, { state: request.state, code, scope: scopes.join(' '), authuser: '0', prompt: 'consent' });
    } catch (error) {
      if (error instanceof MailStoreError) return showError(res, 400, 'invalid_request', error.message);
      throw error;
    }
  }

  const authorize = (req: Request, res: Response) => {
    trackCall(ctx, res, 'authorize');
    const clientId = queryString(req, 'client_id');
    const redirectUri = queryString(req, 'redirect_uri');
    const problem = ctx.oauth.validateClientAndRedirect(clientId, redirectUri);
    if (problem || !clientId || !redirectUri) return showError(res, problem?.status ?? 400, problem?.error ?? 'invalid_request', problem?.description ?? '');

    const state = queryString(req, 'state');
    if (queryString(req, 'response_type') !== 'code') {
      return redirectWith(res, redirectUri, { error: 'unsupported_response_type', state });
    }
    const scopes = (queryString(req, 'scope') ?? '').split(/\s+/).filter(Boolean);
    if (scopes.length === 0) return showError(res, 400, 'invalid_request', 'Missing required parameter: scope');
    const accessType = queryString(req, 'access_type') ?? 'online';
    if (accessType !== 'online' && accessType !== 'offline') {
      return showError(res, 400, 'invalid_request', `Invalid access_type: ${accessType}`);
    }
    const codeChallenge = queryString(req, 'code_challenge');
    const method = queryString(req, 'code_challenge_method') ?? (codeChallenge ? 'plain' : undefined);
    if (method !== undefined && method !== 'S256' && method !== 'plain') {
      return showError(res, 400, 'invalid_request', `Invalid code_challenge_method: ${method}`);
    }
    const request: AuthorizationRequest = {
      clientId,
      redirectUri,
      scopes,
      state,
      accessType,
      includeGrantedScopes: queryString(req, 'include_granted_scopes') === 'true',
      prompt: (queryString(req, 'prompt') ?? '').split(/\s+/).filter(Boolean),
      loginHint: queryString(req, 'login_hint')?.trim().toLowerCase() || undefined,
      nonce: queryString(req, 'nonce'),
      codeChallenge,
      codeChallengeMethod: method,
    };

    const queued = ctx.oauth.takeQueuedDecision();
    if (queued) {
      if (queued.decision === 'deny') return redirectWith(res, redirectUri, { error: 'access_denied', state });
      return approve(res, request, queued.email ?? request.loginHint ?? latestMailbox() ?? DEFAULT_MAILBOX, queued.kind);
    }
    if (request.prompt.includes('none')) {
      const email = request.loginHint ?? latestMailbox();
      if (!email || !ctx.store.find(email)) return redirectWith(res, redirectUri, { error: 'login_required', state });
      if (!ctx.oauth.hasActiveGrant(email, clientId)) return redirectWith(res, redirectUri, { error: 'consent_required', state });
      return approve(res, request, email);
    }
    if (ctx.autoApprove) return approve(res, request, request.loginHint ?? latestMailbox() ?? DEFAULT_MAILBOX);

    const pendingId = ctx.oauth.remember(request);
    res.type('html').send(consentPage({ pendingId, request, mailboxes: ctx.store.list() }));
  };
  router.get([OAUTH_PATHS.authorize, '/o/oauth2/auth'], authorize);

  router.post(OAUTH_PATHS.decision, ...forms, (req, res) => {
    const body = stringFields(req.body);
    const request = body['request'] ? ctx.oauth.recall(body['request']) : undefined;
    if (!request) return showError(res, 400, 'invalid_request', 'This sign-in request has expired or was already answered. Start again from the application.');
    if (body['decision'] !== 'allow') return redirectWith(res, request.redirectUri, { error: 'access_denied', state: request.state });
    const email = body['email']?.trim();
    if (!email) return showError(res, 400, 'invalid_request', 'Choose the mailbox that approves.');
    approve(res, request, email, isKind(body['kind']) ? body['kind'] : undefined);
  });

  router.post([OAUTH_PATHS.token, '/o/oauth2/token', '/oauth2/v4/token'], ...forms, async (req, res) => {
    const call = trackCall(ctx, res, 'token');
    res.set({ 'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate', Pragma: 'no-cache' });
    const body = stringFields(req.body);
    const mailbox = ctx.oauth.mailboxForTokenRequest(body);
    call.mailbox = mailbox;
    const fault = ctx.faults.decide('token', mailbox, ctx.now());
    if (fault.latencyMs > 0) await sleep(fault.latencyMs);
    if (fault.error) {
      call.faulted = true;
      if (fault.revokeGrant && mailbox) ctx.oauth.revokeMailbox(mailbox);
      return sendGoogleError(res, fault.error);
    }
    try {
      res.json(ctx.oauth.exchange(body, req.headers.authorization));
    } catch (error) {
      if (error instanceof OAuthError) return sendGoogleError(res, error);
      throw error;
    }
  });

  const revoke = async (req: Request, res: Response) => {
    const call = trackCall(ctx, res, 'revoke');
    const token = queryString(req, 'token') ?? stringFields(req.body)['token'];
    const fault = ctx.faults.decide('revoke', undefined, ctx.now());
    if (fault.latencyMs > 0) await sleep(fault.latencyMs);
    if (fault.error) {
      call.faulted = true;
      return sendGoogleError(res, fault.error);
    }
    if (!token) return sendGoogleError(res, new OAuthError(400, 'invalid_request', 'Missing required parameter: token'));
    if (!ctx.oauth.revokeToken(token)) return sendGoogleError(res, new OAuthError(400, 'invalid_token', 'Token expired or revoked'));
    res.json({});
  };
  router.post([OAUTH_PATHS.revoke, '/o/oauth2/revoke'], ...forms, revoke);
  router.get([OAUTH_PATHS.revoke, '/o/oauth2/revoke'], revoke);

  const tokenInfo = (req: Request, res: Response) => {
    trackCall(ctx, res, 'tokeninfo');
    const header = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const value = queryString(req, 'access_token') ?? stringFields(req.body)['access_token'] ?? header;
    const info = ctx.oauth.authenticate(value);
    if (!info) return res.status(400).json({ error: 'invalid_token', error_description: 'Invalid Value' });
    const expiresIn = Math.max(0, Math.floor((info.expiresAt - ctx.now().getTime()) / 1000));
    res.json({
      azp: info.clientId,
      aud: info.clientId,
      sub: ctx.store.find(info.email)?.sub ?? info.email,
      scope: info.scopes.join(' '),
      exp: String(Math.floor(info.expiresAt / 1000)),
      expires_in: expiresIn,
      email: info.email,
      email_verified: 'true',
    });
  };
  router.get([OAUTH_PATHS.tokenInfo, '/oauth2/v3/tokeninfo'], tokenInfo);
  router.post([OAUTH_PATHS.tokenInfo, '/oauth2/v3/tokeninfo'], ...forms, tokenInfo);

  router.get([OAUTH_PATHS.userInfo, '/oauth2/v2/userinfo', '/oauth2/v1/userinfo'], (req, res) => {
    trackCall(ctx, res, 'userinfo');
    const header = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const info = ctx.oauth.authenticate(header ?? queryString(req, 'access_token'));
    if (!info) {
      return res
        .status(401)
        .set('WWW-Authenticate', 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
        .json({ error: 'invalid_request', error_description: 'Invalid Credentials' });
    }
    const mailbox = ctx.store.find(info.email);
    res.json({
      sub: mailbox?.sub ?? info.email,
      email: info.email,
      email_verified: true,
      ...(mailbox ? { name: mailbox.displayName } : {}),
      ...(mailbox?.kind === 'workspace' ? { hd: info.email.split('@')[1] } : {}),
    });
  });

  router.get(OAUTH_PATHS.pemCerts, (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(ctx.keys.pemCerts());
  });
  router.get(OAUTH_PATHS.jwkCerts, (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(ctx.keys.jwks());
  });

  return router;
}
