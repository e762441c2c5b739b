import type { Request, RequestHandler } from 'express';
import { AppError } from '../errors.js';

/*
 * Fetch Metadata (`Sec-Fetch-Site`): where a browser says a request came from — `same-origin`
 * (one of our own pages), `same-site`, `cross-site`, or `none` (typed in, a bookmark). A client
 * that sends no such header (an old browser, a script) cannot be told apart and is let through
 * by both checks here: they stop what another site makes a person's browser do, not clients.
 */

const fetchSiteOf = (req: Request): string | undefined => req.get('sec-fetch-site')?.trim().toLowerCase();

/** A navigation from one of our own pages (or from a client that does not say). */
export const cameFromOurPage = (req: Request): boolean => {
  const site = fetchSiteOf(req);
  return site === undefined || site === 'same-origin';
};

/**
 * The web app's downloads (CSV exports, JSON documents) are GETs the session cookie
 * authenticates, and SameSite=Lax sends it on another site's top-level navigation: a link or
 * a script there could make a signed-in person's browser fetch an export (and an audited one
 * record a download the person never asked for). Such a request is refused, 403
 * `cross_site_download`, before anything is read. A typed address or a bookmark (`none`) still
 * downloads. The API never reads the cookie (bearer tokens and API keys only), so its routes
 * need no such check.
 */
export const refuseCrossSiteDownload: RequestHandler = (req, _res, next) => {
  if (fetchSiteOf(req) === 'cross-site') {
    throw new AppError('cross_site_download', 403, 'This download starts only from inboxtrail’s own pages, not from a link on another site: open it from its page here');
  }
  next();
};
