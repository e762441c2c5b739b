import { Router, type RequestHandler, type Request, type Response } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { readCookie } from '../web/cookies.js';
import { html } from '../web/html.js';
import { renderPage } from '../web/layout.js';
import { OVER_GMAIL_DAILY_LIMIT, type MailboxService } from './mailboxes.service.js';
import { AppError } from '../errors.js';
import { GMAIL_DAILY_SEND_LIMITS } from '../config/schema.js';

export const connectQuery = z.object({
  sync: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  /** The disclosure version the person just read and accepted: go straight to Google. */
  acknowledge: z.string().max(50).optional(),
  loginHint: z.email().optional(),
});
export const callbackQuery = z.object({
  code: z.string().max(2000).optional(),
  state: z.string().max(4000).optional(),
  error: z.string().max(200).optional(),
});
/**
 * Never above Gmail's own daily limit: the account's budget is the highest set in any workspace
 * it is connected in (gmail/LIMITS-AND-SENDING.md, "Daily budget"). The limit of the mailbox's kind (500 for
 * consumer Gmail) is the service's check; this is the higher, Google Workspace's.
 */
export const patchMailboxBody = z
  .object({
    dailyBudget: z
      .number()
      .int()
      .min(1)
      .max(GMAIL_DAILY_SEND_LIMITS.workspace, OVER_GMAIL_DAILY_LIMIT),
  })
  .strict();

const wantsJson = (req: Request) => req.accepts(['html', 'json']) === 'json';

const CONNECT_COOKIE = 'inboxtrail_gmail_connect';
/** The web app's notice (web.middleware.ts NOTICES) for a browser whose connection failed, by error code. */
const CONNECT_NOTICES: Record<string, string> = {
  consent_denied: 'connect_denied',
  invalid_state: 'connect_expired',
  connection_not_started_here: 'connect_expired',
  scope_not_granted: 'connect_scopes',
  google_unavailable: 'connect_unavailable',
  mailbox_connected_by_another: 'connect_taken',
};
const CALLBACK_PATH = '/api/gmail/callback';

/**
 * Binds a connection to the browser that starts it: the callback refuses a state whose
 * cookie is missing or different. The web app's connect page sets it the same way.
 */
export function setConnectCookie(res: Response, start: { browserSecret: string; browserSecretTtlSeconds: number }, secureCookies: boolean) {
  res.cookie(CONNECT_COOKIE, start.browserSecret, {
    httpOnly: true,
    sameSite: 'lax',
    secure: secureCookies,
    path: CALLBACK_PATH,
    maxAge: start.browserSecretTtlSeconds * 1000,
  });
}

/** `secureCookies`: mark the binding cookie Secure (PUBLIC_BASE_URL is https). */
export function gmailRoutes(mailboxes: MailboxService, authenticated: RequestHandler, secureCookies = false): Router {
  const router = Router();
  router.use(['/gmail/connect', '/mailboxes'], authenticated);

  /**
   * P-05: the Limited Use disclosure comes first. JSON clients get it with the consent URL
   * and must show it; browsers get a page whose button leads on to Google.
   */
  router.get('/gmail/connect', async (req, res) => {
    const query = parseInput(connectQuery, req.query, '(query)');
    const start = await mailboxes.startConnection(authOf(req), { sync: query.sync, loginHint: query.loginHint });
    setConnectCookie(res, start, secureCookies);
    if (wantsJson(req)) {
      res.json({ disclosure: start.disclosure, scopes: start.scopes, url: start.url });
      return;
    }
    if (query.acknowledge === start.disclosure.version) {
      res.redirect(302, start.url);
      return;
    }
    res.type('html').send(
      renderPage(
        start.disclosure.title,
        html`<h1>${start.disclosure.title}</h1>
<ul>${start.disclosure.points.map((point) => html`<li>${point}</li>`)}</ul>
<p class="muted">Disclosure version ${start.disclosure.version}. Permissions requested: ${start.scopes.join(', ')}.</p>
<div class="actions"><a class="button" href="${start.url}">I understand — continue to Google</a></div>`,
      ),
    );
  });

  /** Google sends the browser here; the signed state says who is connecting, the cookie that this browser started it. */
  router.get('/gmail/callback', async (req, res) => {
    const browserSecret = readCookie(req, CONNECT_COOKIE);
    res.clearCookie(CONNECT_COOKIE, { path: CALLBACK_PATH, httpOnly: true, sameSite: 'lax', secure: secureCookies });
    let mailbox;
    try {
      mailbox = await mailboxes.completeConnection(parseInput(callbackQuery, req.query, '(query)'), browserSecret);
    } catch (error) {
      // A browser goes back to the mailboxes page with what went wrong, not to a JSON error it
      // cannot leave (consent denied, a connect link expired or opened elsewhere, Google down).
      const notice = error instanceof AppError && !wantsJson(req) ? CONNECT_NOTICES[error.code] ?? (error.status < 500 ? 'connect_failed' : undefined) : undefined;
      if (!notice) throw error;
      res.redirect(303, `/app/mailboxes?notice=${notice}`);
      return;
    }
    if (wantsJson(req)) {
      res.status(201).json(mailbox);
      return;
    }
    // A browser goes back to the web app's mailboxes page, which shows the new mailbox's health.
    res.redirect(303, '/app/mailboxes?notice=connected');
  });

  router.get('/mailboxes', async (req, res) => {
    res.json({ mailboxes: await mailboxes.list(authOf(req)) });
  });
  router.patch('/mailboxes/:id', async (req, res) => {
    const id = parseId(req.params.id, 'Mailbox');
    res.json(await mailboxes.update(authOf(req), id, parseInput(patchMailboxBody, req.body)));
  });
  router.delete('/mailboxes/:id', async (req, res) => {
    await mailboxes.disconnect(authOf(req), parseId(req.params.id, 'Mailbox'));
    res.status(204).end();
  });
  return router;
}
