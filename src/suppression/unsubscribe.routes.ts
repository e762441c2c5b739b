import { Router, type ErrorRequestHandler, type RequestHandler, type Response } from 'express';
import { prepareErrorAnswer, toAppError, ValidationError } from '../errors.js';
import { readFormFields, type FormFields } from '../http/form-body.js';
import { PREFERENCE_ACTIONS, type PreferenceAction, type PreferenceChoices } from './recipient-view.js';
import type { SuppressionService } from './suppression.service.js';
import { TRACKING_CHOICES, type TrackingChoice } from './tracking-preference.js';
import { preferencesNotice, preferencesPage, problemPage, resubscribedPage, resubscribeQuestionPage, unsubscribeQuestionPage, unsubscribedPage } from './unsubscribe.pages.js';

/*
 * The recipient's public pages: /u/<token> (unsubscribe, RFC 8058 one-click) and
 * /p/<token> (preference center), and /p/confirm/<token> (the mailed link that confirms undoing
 * an opt-out or allowing tracking again). Not under /api and without login, session, cookie or CSRF token: the token in
 * the URL is the credential, and mail providers POST the one-click request from their own
 * servers. A link from a campaign's mail is no proof of who holds it (mail is forwarded), so
 * it only ever stops mail (or tracking); turning it back on takes the address's own confirmation.
 */

const MAX_TOPIC_FIELDS = 500;

/** Nothing here may be cached by a browser or proxy, nor indexed. */
const noStore: RequestHandler = (_req, res, next) => {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Robots-Tag', 'noindex, nofollow');
  next();
};

const sendPage = (res: Response, status: number, page: string) => {
  res.status(status).type('html').send(page);
};

/**
 * The token of a recipient's link. Punctuation a mail client's link detection may take in at its
 * end (a link ending a sentence: `…/u/<token>.`, or `<…/u/<token>>`) is dropped: no token ends
 * in one of these (their segments are base64url), and a link that breaks costs an opt-out.
 */
const tokenOf = (value: string | string[] | undefined) => (typeof value === 'string' ? value.replace(/[.,;:!?)\]>'"]+$/, '') : '');

/**
 * RFC 8058 §3.1: the one-click POST carries `List-Unsubscribe=One-Click`. The page's own
 * button sends `confirm=yes`. A POST with neither (a stray or empty request) changes nothing.
 */
/** Values compared without surrounding white space: some senders end the one-click body with a line break. */
function isUnsubscribeRequest(form: FormFields): boolean {
  const says = (name: string, value: string) => Boolean(form.get(name)?.some((given) => given.trim() === value));
  return says('List-Unsubscribe', 'One-Click') || says('confirm', 'yes');
}

function parsePreferenceChoices(form: FormFields): PreferenceChoices {
  const problems: { field: string; message: string }[] = [];
  for (const name of form.keys()) {
    if (name !== 'action' && name !== 'topics' && name !== 'subscribed' && name !== 'tracking') problems.push({ field: name, message: 'is not a field of this form' });
  }
  const actions = form.get('action') ?? ['save'];
  const action = actions[0] as PreferenceAction;
  if (actions.length !== 1 || !PREFERENCE_ACTIONS.includes(action)) problems.push({ field: 'action', message: `must be one of ${PREFERENCE_ACTIONS.join(', ')}` });
  const topics = form.get('topics') ?? [];
  const subscribed = form.get('subscribed') ?? [];
  if (topics.length + subscribed.length > MAX_TOPIC_FIELDS) problems.push({ field: 'topics', message: 'too many values' });
  const trackingValues = form.get('tracking');
  const tracking = trackingValues?.[0] as TrackingChoice | undefined;
  if (trackingValues && (trackingValues.length !== 1 || !TRACKING_CHOICES.includes(tracking!))) {
    problems.push({ field: 'tracking', message: `must be one of ${TRACKING_CHOICES.join(', ')}` });
  }
  if (problems.length > 0) throw new ValidationError(problems);
  return { action, topics, subscribed, ...(tracking ? { tracking } : {}) };
}

/** Errors become plain pages (a person reads them); a failure to save says so, and is never a confirmation. */
export const unsubscribeErrorPage: ErrorRequestHandler = (error, req, res, _next) => {
  const appError = toAppError(error);
  if (appError.status >= 500) req.log?.error({ err: error }, 'opt-out request failed');
  if (res.headersSent) return;
  res.setHeader('Cache-Control', 'no-store');
  prepareErrorAnswer(appError, res, req.log);
  sendPage(res, appError.status, problemPage(appError.status, appError.message));
};

export function unsubscribeRoutes(suppressions: SuppressionService): Router {
  const router = Router();
  router.use(['/u', '/p'], noStore);

  /** Shows the question and one button. Never changes anything: scanners and previews fetch links. */
  router.get('/u/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    sendPage(res, 200, unsubscribeQuestionPage(await suppressions.unsubscribePage(token), token));
  });

  /** RFC 8058 one-click, and the page's button. 200 only after the suppression has committed; no redirect. */
  router.post('/u/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    const form = await readFormFields(req, { oneClick: true });
    if (!isUnsubscribeRequest(form)) {
      throw new ValidationError([{ field: 'List-Unsubscribe', message: 'must be One-Click (or confirm=yes from the page)' }]);
    }
    const view = await suppressions.unsubscribe(token);
    sendPage(res, 200, unsubscribedPage(view, token));
  });

  router.get('/p/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    sendPage(res, 200, preferencesPage(await suppressions.preferences(token), token));
  });

  router.post('/p/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    const choices = parsePreferenceChoices(await readFormFields(req));
    const view = await suppressions.savePreferences(token, choices);
    // The rest of the form is saved either way; a 503 says only the confirmation mail did not go.
    sendPage(res, view.resubscribe?.outcome === 'mail_unavailable' ? 503 : 200, preferencesPage(view, token, preferencesNotice(view)));
  });

  /** The mailed confirmation's page: what its one button turns back on. Never changes anything: scanners fetch links. */
  router.get('/p/confirm/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    sendPage(res, 200, resubscribeQuestionPage(await suppressions.resubscribePage(token), token));
  });

  /** The button: undoes exactly what the token names, once; again, nothing changes. */
  router.post('/p/confirm/:token', async (req, res) => {
    const token = tokenOf(req.params.token);
    const form = await readFormFields(req);
    if (!form.get('confirm')?.some((value) => value.trim() === 'yes')) throw new ValidationError([{ field: 'confirm', message: 'must be yes (the page\'s button)' }]);
    sendPage(res, 200, resubscribedPage(await suppressions.confirmResubscribe(token)));
  });

  router.use(['/u', '/p'], unsubscribeErrorPage);
  return router;
}
