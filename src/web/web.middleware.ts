import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import type { Services } from '../app.js';
import type { Config } from '../config.js';
import type { AuthContext, AuthService } from '../auth/auth.service.js';
import { AppError, ForbiddenError, prepareErrorAnswer, toAppError } from '../errors.js';
import { assertAcceptedFieldName, assertCleanText } from '../http/text.js';
import { readMultipartForm } from '../http/form-body.js';
import type { Logger } from '../logger.js';
import { assertSingleValuedFields } from './forms.js';
import { html } from './html.js';
import type { WebCookies } from './cookies.js';
import { CSRF_FIELD, csrfTokenFor, csrfTokenMatches, newBrowserSecret } from './csrf.js';
import { renderAppPage, renderPublicPage, type AppFrame, type NavSection } from './layout.js';
import type { SessionLookup, WebSessionsService } from './web-sessions.service.js';

/** What the web middleware knows about the browser making this request. */
export interface BrowserState {
  session: SessionLookup;
  /** The HttpOnly cookie value this browser's CSRF token derives from. */
  csrfBasis: string;
  csrfToken: string;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      browser?: BrowserState;
    }
  }
}

export class CsrfError extends AppError {
  constructor() {
    super('csrf_token_invalid', 403, 'This form is out of date or did not come from inboxtrail. Nothing was changed: go back, reload the page and try again.');
  }
}

/** Everything the pages share: the services they call, cookies, where the sandbox is. */
export interface WebContext {
  /** The same services the API routes call: pages never reach the database another way. */
  services: Services;
  config: Config;
  auth: AuthService;
  webSessions: WebSessionsService;
  cookies: WebCookies;
  /** Cookies are Secure (production, or an https PUBLIC_BASE_URL). */
  secureCookies: boolean;
  sandboxInboxUrl?: string;
  logger: Logger;
}

/**
 * Resolves the session cookie (clearing one that ended) and makes sure the browser has a
 * CSRF basis: the session cookie when signed in, else a random per-browser cookie.
 */
export function browserState(ctx: WebContext): RequestHandler {
  return async (req, res, next) => {
    const sessionCookie = ctx.cookies.session.read(req);
    const session = await ctx.webSessions.resolve(sessionCookie);
    if (session.state === 'ended') ctx.cookies.session.clear(res);
    let csrfBasis = session.state === 'active' ? sessionCookie! : ctx.cookies.browser.read(req);
    if (!csrfBasis) {
      csrfBasis = newBrowserSecret();
      ctx.cookies.browser.set(res, csrfBasis);
    }
    req.browser = { session, csrfBasis, csrfToken: csrfTokenFor(csrfBasis) };
    // Pages carry the CSRF token and personal data: never cached, never sent as a Referer.
    res.set({ 'Cache-Control': 'no-store', 'Referrer-Policy': 'same-origin' });
    next();
  };
}

/**
 * Every posted form of the web app, whatever its encoding: a field other than a checkbox group
 * sent twice is a 400 (forms.ts assertSingleValuedFields), before the CSRF check reads the token.
 */
export const refuseRepeatedFields: RequestHandler = (req, _res, next) => {
  if (req.method === 'POST') assertSingleValuedFields(req.body);
  next();
};

/** Every state-changing request of the web app: the form's token must match this browser. */
export const requireCsrf: RequestHandler = (req, _res, next) => {
  if (req.method === 'GET' || req.method === 'HEAD') return next();
  const body = req.body as Record<string, unknown> | undefined;
  if (!csrfTokenMatches(req.browser?.csrfBasis, body?.[CSRF_FIELD])) throw new CsrfError();
  next();
};

/** A CSV import from the browser: bigger files go through POST /api/contacts/import. */
export const WEB_UPLOAD_MAX_BYTES = 5 * 1024 * 1024;

/**
 * Forms with a file (the CSV import) arrive as multipart/form-data: read up to
 * WEB_UPLOAD_MAX_BYTES into req.body, files as text, so requireCsrf and the pages see one
 * shape — a name given several values as a list of them, as the urlencoded parser gives it (it
 * kept only the last, silently), for refuseRepeatedFields to judge. The same text rule as every
 * other body applies (no NUL, no lone surrogate).
 */
export const multipartForms: RequestHandler = async (req, _res, next) => {
  if (req.method !== 'POST' || !req.is('multipart/form-data')) return next();
  const form = await readMultipartForm(req, WEB_UPLOAD_MAX_BYTES);
  const body: Record<string, string | string[]> = {};
  for (const [name, value] of form.entries()) {
    const text = typeof value === 'string' ? value : await value.text();
    assertCleanText(name, '(field name)');
    // `body.__proto__ = text` would drop the field without a word: refused, as in a urlencoded form.
    assertAcceptedFieldName(name);
    assertCleanText(text, name);
    const before = Object.hasOwn(body, name) ? body[name]! : undefined;
    body[name] = before === undefined ? text : [...(Array.isArray(before) ? before : [before]), text];
  }
  req.body = body;
  next();
};

/** Only same-origin paths under /app may be a post-sign-in destination (no open redirect). */
export function safeNext(value: unknown): string | undefined {
  return typeof value === 'string' && /^\/app(\/[A-Za-z0-9\-._~/?=&%]*)?$/.test(value) && !value.includes('//') ? value : undefined;
}

/** App pages: a live session, else to sign-in (saying so when a session just ended). Sets req.auth like the API's requireAuth. */
export const requireSignedIn: RequestHandler = (req, res, next) => {
  const session = req.browser?.session;
  if (session?.state === 'active') {
    req.auth = { ...session.auth, requestId: String(req.id) };
    return next();
  }
  const params = new URLSearchParams();
  if (session?.state === 'ended') params.set('expired', '1');
  const back = req.method === 'GET' ? safeNext(req.originalUrl) : undefined;
  if (back) params.set('next', back);
  const query = params.toString();
  res.redirect(303, `/signin${query ? `?${query}` : ''}`);
};

/** The signed-in person of an app page; requireSignedIn has run. */
export function signedIn(req: Request): AuthContext {
  if (!req.auth) throw new AppError('unauthorized', 401, 'Sign in first');
  return req.auth;
}

/** Owners and admins only (`what` completes "Only owners and admins …"), as the API's admin routes. */
export function signedInAdmin(req: Request, what: string): AuthContext {
  const auth = signedIn(req);
  if (auth.role === 'member') throw new ForbiddenError(`Only owners and admins ${what}`);
  return auth;
}

/** Notices a redirect may ask a page to show: keys only, so no text can be injected through a URL. */
const NOTICES: Record<string, string> = {
  signed_in: 'Welcome back.',
  welcome: 'Your account is ready. Connect a Gmail mailbox to start.',
  connected: 'Gmail is connected.',
  disconnected: 'The mailbox was disconnected and its Gmail data deleted.',
  saved: 'Saved.',
  password_changed: 'Your password was changed. Every other session of yours (other browsers, session tokens) is signed out.',
  email_changed: 'Your login address was changed. Your previous address was told by mail.',
  email_unchanged: 'That is already your login address; nothing was changed.',
  close_moved: 'Closing your account is on this page now, and nothing was closed: to close it, enter your password under "Close my account".',
  imported: 'Import finished.',
  sent: 'Your mail was sent.',
  send_pending: 'The send is not confirmed yet; the contact\'s timeline shows the outcome once it is known.',
  suppressed: 'The address is on the suppression list.',
  unsuppressed: 'The address was removed from the suppression list.',
  invited: 'Invitation created.',
  campaign_launch: 'The campaign is launched.',
  campaign_pause: 'The campaign is paused. Nothing more is sent until you resume it.',
  campaign_resume: 'The campaign is sending again.',
  campaign_cancel: 'The campaign is cancelled. Messages not yet sent will not be sent.',
  grant_created: 'Your teammate may read this message until the date shown.',
  grant_revoked: 'Access withdrawn: your teammate can no longer read this message.',
  redelivery_queued: 'The event is queued to be delivered again (same event id).',
  workspace_switched: 'You are now in this workspace.',
  connect_denied: 'Gmail was not connected: access was not granted on Google\'s page.',
  connect_expired: 'Gmail was not connected: that connect link expired or was opened in another browser. Connect again from here.',
  connect_scopes: 'Gmail was not connected: every permission asked for is needed. Connect again and leave them all ticked.',
  connect_unavailable: 'Gmail was not connected: Google did not answer. Try again in a minute.',
  connect_taken: 'Gmail was not connected: another member of this workspace has connected that address. They, or an admin, can disconnect it first.',
  connect_failed: 'Gmail was not connected. Connect again from here.',
};

/** Renders an app page inside the shared frame for the signed-in person. */
export async function sendAppPage(ctx: WebContext, req: Request, res: Response, page: { title: string; section?: NavSection; body: ReturnType<typeof html>; status?: number }) {
  const member = signedIn(req);
  const [me, workspaces] = await Promise.all([ctx.auth.me(member), ctx.auth.workspacesOf(member)]);
  const noticeKey = typeof req.query.notice === 'string' ? req.query.notice : undefined;
  const frame: AppFrame = {
    userEmail: me.user.email,
    workspaceName: me.workspace.name,
    csrfToken: req.browser!.csrfToken,
    sandboxInboxUrl: ctx.sandboxInboxUrl,
    section: page.section,
    // Own keys only: `?notice=constructor` must not find what every object inherits.
    notice: noticeKey && Object.hasOwn(NOTICES, noticeKey) ? NOTICES[noticeKey] : undefined,
    workspaces,
    workspaceId: member.workspaceId,
  };
  res.status(page.status ?? 200).type('html').send(renderAppPage(page.title, frame, page.body));
}

/** Errors on web paths become an HTML page with the same status and code the API would give. */
export function webErrorPage(ctx: WebContext): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const appError = toAppError(error);
    if (appError.status >= 500) (req.log ?? ctx.logger).error({ err: error }, 'page failed');
    if (res.headersSent) return;
    if (!req.complete) res.setHeader('Connection', 'close');
    prepareErrorAnswer(appError, res, req.log ?? ctx.logger);
    const title = appError.status === 403 ? 'Not allowed' : appError.status === 404 ? 'Not found' : appError.status >= 500 ? 'Something went wrong' : 'Not accepted';
    const body = html`<h1>${title}</h1><p>${appError.message}</p><p class="muted">Code: <code>${appError.code}</code></p>
<div class="actions"><a class="button" href="/app">Back to the app</a></div>`;
    res.status(appError.status).set('Cache-Control', 'no-store').type('html').send(renderPublicPage(title, body, ctx.sandboxInboxUrl));
  };
}
