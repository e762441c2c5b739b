import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { campaignBody, listCampaignsQuery } from '../campaigns/campaigns.routes.js';
import { maySendFrom } from '../campaigns/campaigns.service.js';
import { parseId } from '../http/params.js';
import { parseInput, entityId } from '../http/validate.js';
import { MAIL_FRAME_POLICY } from './csp.js';
import { campaignBodyFromForm, emptyForm, formFromCampaign, readCampaignForm, type CampaignFormValues, type FormBody } from './campaign-form.js';
import { campaignEditor } from './campaign-editor.view.js';
import { campaignDetail, campaignList, preflightReport, previewDocument, WAITING_TEXT } from './campaign-detail.view.js';
import { errorNotice, formProblem } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

/*
 * Campaign pages: list, editor with live preview, one campaign with its progress, preflight,
 * launch / pause / resume / cancel. Every action calls the campaigns service the API calls.
 */

/** Campaigns a page of the list shows. */
const CAMPAIGN_PAGE_SIZE = 50;
const PREVIEW_CONTACTS = 50;
const contactQuery = z.object({ contact: entityId.optional() });

export function campaignPages(ctx: WebContext): Router {
  const router = Router();
  const { campaigns, contacts, mailboxes } = ctx.services;

  const stylesheet = html`<link rel="stylesheet" href="/assets/campaigns.css">`;
  const page = (req: Request, res: Response, title: string, body: SafeHtml, status = 200) =>
    sendAppPage(ctx, req, res, { title, section: 'campaigns', body: html`${stylesheet}${body}`, status });

  async function renderEditor(req: Request, res: Response, options: { title: string; action: string; values: CampaignFormValues & { contactIds?: string[] }; previewContactId?: string; error?: string; status?: number }) {
    const auth = signedIn(req);
    const [all, people] = await Promise.all([mailboxes.list(auth), contacts.list(auth, { limit: PREVIEW_CONTACTS })]);
    // Only the mailboxes the save would take (a member: their own), so "Send from" offers no refusal.
    const boxes = all.filter((m) => maySendFrom(auth, m.ownerUserId));
    const values = { ...options.values, mailboxId: options.values.mailboxId || (boxes.find((m) => m.status === 'active')?.id ?? '') };
    const editor = campaignEditor({ csrfToken: req.browser!.csrfToken, action: options.action, values, mailboxes: boxes, contacts: people.contacts, previewContactId: options.previewContactId, error: options.error });
    await page(req, res, options.title, html`<h1>${options.title}</h1>${editor}`, options.status);
  }

  /** Saves the posted form through the API's schema; a problem the sender can fix re-renders the form with it. */
  async function save(req: Request, res: Response, existing?: { id: string; contactIds?: string[] }) {
    const auth = signedIn(req);
    const body = req.body as FormBody;
    const values = { ...readCampaignForm(body), contactIds: existing?.contactIds };
    const title = existing ? 'Edit campaign' : 'New campaign';
    const action = existing ? `/app/campaigns/${existing.id}` : '/app/campaigns';
    const previewContactId = typeof body.previewContactId === 'string' ? body.previewContactId : undefined;
    if (body.intent === 'more') return renderEditor(req, res, { title, action, values, previewContactId });
    try {
      const input = parseInput(campaignBody, campaignBodyFromForm(values, existing?.contactIds));
      const saved = existing ? await campaigns.update(auth, existing.id, input) : await campaigns.create(auth, input);
      res.redirect(303, `/app/campaigns/${saved.id}?notice=saved`);
    } catch (error) {
      const problem = formProblem(error);
      await renderEditor(req, res, { title, action, values, previewContactId, error: problem.message, status: problem.status });
    }
  }

  async function showCampaign(req: Request, res: Response, id: string, extra: { preflight?: SafeHtml; error?: string; status?: number } = {}) {
    const auth = signedIn(req);
    const campaign = await campaigns.get(auth, id);
    const mailbox = (await mailboxes.list(auth)).find((m) => m.id === campaign.mailboxId);
    // A campaign of a teammate's mailbox shows a member no buttons the service would refuse (a mailbox gone protects nobody's).
    const maySend = !mailbox || maySendFrom(auth, mailbox.ownerUserId);
    const body = html`${errorNotice(extra.error)}${campaignDetail(campaign, { csrfToken: req.browser!.csrfToken, mailboxEmail: mailbox?.email, preflight: extra.preflight, maySend })}`;
    await page(req, res, campaign.name, body, extra.status);
  }

  router.get('/campaigns', async (req, res) => {
    const query = parseInput(listCampaignsQuery, { ...req.query, limit: String(CAMPAIGN_PAGE_SIZE) });
    await page(req, res, 'Campaigns', campaignList(await campaigns.list(signedIn(req), query), !query.cursor));
  });

  router.get('/campaigns/new', async (req, res) => {
    await renderEditor(req, res, { title: 'New campaign', action: '/app/campaigns', values: emptyForm() });
  });

  router.post('/campaigns', async (req, res) => save(req, res));

  /** The editor's Preview button posts the unsaved form here, into the preview frame. */
  router.post('/campaigns/preview', async (req, res) => {
    const body = req.body as FormBody;
    const form = readCampaignForm(body);
    const contactId = parseId(typeof body.previewContactId === 'string' ? body.previewContactId : '', 'Contact');
    const preview = await campaigns.preview(
      signedIn(req),
      { kind: form.kind === 'transactional' ? 'transactional' : 'marketing', subject: form.subject, html: form.html || undefined, text: form.text || undefined },
      contactId,
    );
    res.set('Content-Security-Policy', MAIL_FRAME_POLICY).type('html').send(previewDocument(preview));
  });

  router.get('/campaigns/:id', async (req, res) => showCampaign(req, res, parseId(req.params.id, 'Campaign')));

  router.get('/campaigns/:id/edit', async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    // The save's own rule (campaigns.getEditable): a member on a teammate's mailbox's campaign, or
    // a campaign past its draft, gets the campaign's page with why and the refusal's status, not an
    // editor whose save is refused. That page is the read-only view they can still use (Pause, Cancel).
    let campaign;
    try {
      campaign = await campaigns.getEditable(signedIn(req), id);
    } catch (error) {
      const problem = formProblem(error);
      return showCampaign(req, res, id, { error: problem.message, status: problem.status });
    }
    await renderEditor(req, res, { title: 'Edit campaign', action: `/app/campaigns/${id}`, values: formFromCampaign(campaign) });
  });

  router.post('/campaigns/:id', async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    const campaign = await campaigns.get(signedIn(req), id);
    await save(req, res, { id, contactIds: 'contactIds' in campaign.audience ? campaign.audience.contactIds : undefined });
  });

  router.get('/campaigns/:id/preview', async (req, res) => {
    const { contact } = parseInput(contactQuery, req.query, '(query)');
    const preview = await campaigns.previewSaved(signedIn(req), parseId(req.params.id, 'Campaign'), contact);
    res.set('Content-Security-Policy', MAIL_FRAME_POLICY).type('html').send(previewDocument(preview));
  });

  /** What campaign-progress.js polls while a campaign sends. */
  router.get('/campaigns/:id/progress.json', async (req, res) => {
    const campaign = await campaigns.get(signedIn(req), parseId(req.params.id, 'Campaign'));
    const { skippedBecause, nextSendAt, waitingFor, ...counts } = campaign.progress;
    res.json({
      status: campaign.status,
      counts,
      skippedBecause,
      nextSendAt,
      waiting: waitingFor ? (WAITING_TEXT[waitingFor] ?? waitingFor) : null,
    });
  });

  router.post('/campaigns/:id/preflight', async (req, res) => {
    const id = parseId(req.params.id, 'Campaign');
    const report = await campaigns.preflight(signedIn(req), id);
    await showCampaign(req, res, id, { preflight: preflightReport(id, report, req.browser!.csrfToken) });
  });

  for (const action of ['launch', 'pause', 'resume', 'cancel'] as const) {
    router.post(`/campaigns/:id/${action}`, async (req, res) => {
      const id = parseId(req.params.id, 'Campaign');
      try {
        if (action === 'launch') await campaigns.launch(signedIn(req), id, {});
        else await campaigns[action](signedIn(req), id);
        res.redirect(303, `/app/campaigns/${id}?notice=campaign_${action}`);
      } catch (error) {
        const problem = formProblem(error);
        await showCampaign(req, res, id, { error: problem.message, status: problem.status });
      }
    });
  }

  return router;
}
