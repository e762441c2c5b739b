import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';
import { NotFoundError } from '../errors.js';
import { isAppReadableForm, refuseUnacceptedFieldNames } from '../http/form-body.js';
import { rejectBadText } from '../http/text.js';
import { authPages } from './auth.pages.js';
import { browserState, multipartForms, refuseRepeatedFields, requireCsrf, requireSignedIn, type WebContext } from './web.middleware.js';

/** Everything the web app answers, so its error page covers exactly these (see app.ts). */
export const WEB_PATHS = ['/signin', '/signup', '/invitations/accept', '/signout', '/app'];
const PUBLIC_FORM_PATHS = ['/signin', '/signup', '/invitations/accept'];

/** Page groups under /app, each a router of its own (mailboxes, contacts, …), added by the composition root. */
export type AppPageGroup = (ctx: WebContext) => Router;

const appForms = express.urlencoded({ extended: false, limit: '10mb', type: (req) => isAppReadableForm(req), verify: refuseUnacceptedFieldNames });

/**
 * The web app: static assets, then per request the session and CSRF state, then the
 * public pages (sign in/up, invitations) and the signed-in pages under /app.
 */
export function webRoutes(ctx: WebContext, pageGroups: AppPageGroup[]): Router {
  const router = Router();
  router.use('/assets', express.static(fileURLToPath(new URL('./static/', import.meta.url)), { index: false, maxAge: '1h' }));

  const withBrowser = browserState(ctx);
  router.get('/', withBrowser, (req, res) => {
    res.redirect(303, req.browser!.session.state === 'active' ? '/app' : '/signin');
  });
  router.use(WEB_PATHS, withBrowser);
  // Signing out of a session that already ended changes nothing, so it needs no token.
  router.post('/signout', (req, res, next) => (req.browser!.session.state === 'active' ? next() : res.redirect(303, '/signin?expired=1')));
  router.use([...PUBLIC_FORM_PATHS, '/signout'], refuseRepeatedFields, requireCsrf);
  router.use(authPages(ctx));

  // Signed-in first, then the form, then the token: a form posted after the session ended goes to
  // sign-in and changes nothing, and nobody signed out makes us read one. The editor's and
  // compose's forms carry whole mail bodies (the API takes 2 MB each of a campaign's HTML and text,
  // which form encoding can double): 100 kB refused a long template with a bare 413.
  router.use('/app', requireSignedIn, appForms, rejectBadText(), multipartForms, refuseRepeatedFields, requireCsrf);
  router.get('/app', (req, res) => res.redirect(303, `/app/mailboxes${new URL(req.originalUrl, 'http://local').search}`));
  for (const group of pageGroups) router.use('/app', group(ctx));
  router.use('/app', (req) => {
    throw new NotFoundError(`Page ${req.originalUrl.split('?')[0]}`, 'page_not_found');
  });
  return router;
}
