import { Router } from 'express';
import { streamCsvDownload } from '../http/csv-download.js';
import { parseId } from '../http/params.js';
import { resultsCsv } from '../tracking/results-csv.js';
import { html } from './html.js';
import { resultsPage } from './results.view.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';
import { refuseCrossSiteDownload } from './fetch-site.js';

/** A campaign's results page and its per-recipient CSV: the results service the API uses. */
export function resultsPages(ctx: WebContext): Router {
  const router = Router();
  const { campaigns, results } = ctx.services;

  router.get('/campaigns/:id/results', async (req, res) => {
    const auth = signedIn(req);
    const id = parseId(req.params.id, 'Campaign');
    const campaign = await campaigns.get(auth, id);
    const body = resultsPage(campaign, await results.campaignResults(auth, id));
    await sendAppPage(ctx, req, res, { title: `Results: ${campaign.name}`, section: 'campaigns', body: html`<link rel="stylesheet" href="/assets/campaigns.css">${body}` });
  });

  router.get('/campaigns/:id/results.csv', refuseCrossSiteDownload, async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    const pages = await results.recipientResults(signedIn(req), id);
    await streamCsvDownload(res, `campaign-${id}-results.csv`, resultsCsv(pages));
  });

  return router;
}
