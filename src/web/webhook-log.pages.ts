import { Router, type Request, type Response } from 'express';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { updateWebhookBody, webhookDeliveriesQuery } from '../webhooks/webhooks.schemas.js';
import { errorNotice, formInput, formRunner, pageForms, urlWithoutCredentials } from './forms.js';
import { pager, when } from './format.js';
import { html, type SafeHtml } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedInAdmin, type WebContext } from './web.middleware.js';

const PAGE_SIZE = 50;
const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;

interface PageState {
  error?: string;
  /** A refused URL change: its message (above the URL form) and the URL as typed, less any credentials. */
  url?: { error: string; typed: string };
  /** The new signing secret, on the answer to the rotation only (never in a URL). */
  secret?: string;
}

/**
 * Settings → one webhook endpoint (owners/admins): its health, its delivery log with every
 * attempt, a change of its URL, redelivery of one event, and secret rotation — the same service
 * and schemas as PATCH /api/webhooks/:id (`url`: the SSRF guard, https in production),
 * GET /api/webhooks/:id/deliveries, POST …/events/:eventId/redeliver and POST …/rotate-secret.
 */
export function webhookLogPages(ctx: WebContext): Router {
  const router = Router();
  const { webhooks } = ctx.services;
  const endpointId = (req: Request) => parseId(req.params.id, 'Webhook endpoint');

  const page = async (req: Request, state: PageState = {}): Promise<SafeHtml> => {
    const auth = signedInAdmin(req, 'manage webhooks');
    const id = endpointId(req);
    const status = typeof req.query.status === 'string' && req.query.status ? req.query.status : undefined;
    const cursor = typeof req.query.cursor === 'string' && req.query.cursor ? req.query.cursor : undefined;
    const endpoint = await webhooks.get(auth, id);
    const log = await webhooks.deliveries(auth, id, parseInput(webhookDeliveriesQuery, { status, cursor, limit: String(PAGE_SIZE) }));
    const token = req.browser!.csrfToken;
    const path = `/app/settings/webhooks/${id}`;
    // The URL form's refusal shows above it, and the page answering it opens there (pageForms).
    const urlForm = pageForms(state.url ? { form: 'url', message: state.url.error } : undefined);
    const rows = log.deliveries.map(
      (d) => html`<tr><td>${d.eventType}<br><span class="muted">${d.eventId}</span></td><td>${when(d.occurredAt)}</td>
<td>${d.status}${d.manual ? html` <span class="muted">(redelivery)</span>` : ''}${d.status === 'pending' ? html`<br><span class="muted">next try ${when(d.nextAttemptAt)}</span>` : ''}</td>
<td>${d.log.length ? html`<ol>${d.log.map((a) => html`<li>${when(a.at)}: ${a.outcome}${a.responseStatus ? html` (HTTP ${a.responseStatus})` : ''}${a.latencyMs === null ? '' : html`, ${a.latencyMs} ms`}</li>`)}</ol>` : html`<span class="muted">not tried yet</span>`}</td>
<td>${endpoint.enabled ? html`<form class="inline" method="post" action="${path}/events/${d.eventId}/redeliver">${csrfField(token)}<button type="submit" class="secondary">Redeliver</button></form>` : html`<span class="muted">enable to redeliver</span>`}</td></tr>`,
    );
    return html`<h1>Webhook endpoint</h1>
<p><a href="/app/settings/integrations">Back to integrations</a></p>${errorNotice(state.error)}
${state.secret ? html`<div class="notice" role="status"><p>New signing secret (it is shown only now; store it somewhere safe). The old one keeps signing until ${when(endpoint.previousSecretExpiresAt)}:</p><p><code>${state.secret}</code></p></div>` : ''}
<table><tbody>
<tr><th scope="row">URL</th><td>${endpoint.url}${endpoint.needsHttpsUrl ? html` <span class="status bad">needs an https URL: nothing is sent to http:// (change it below)</span>` : ''}</td></tr>
<tr><th scope="row">Events</th><td>${endpoint.eventTypes.join(', ')}</td></tr>
<tr><th scope="row">Status</th><td>${endpoint.enabled ? endpoint.status : 'disabled'}${endpoint.consecutiveFailures ? html` <span class="muted">(${endpoint.consecutiveFailures} failed attempt${endpoint.consecutiveFailures === 1 ? '' : 's'} in a row since ${when(endpoint.failingSince)})</span>` : ''}</td></tr>
<tr><th scope="row">Last success</th><td>${when(endpoint.lastSuccessAt)}</td></tr>
<tr><th scope="row">Replaced secrets</th><td>${endpoint.previousSecretExpiresAt && endpoint.previousSecretExpiresAt > new Date() ? html`still sign (the last until ${when(endpoint.previousSecretExpiresAt)})` : 'none'}</td></tr>
</tbody></table>
<h2 id="url">Change the URL</h2>${urlForm.notice('url')}
<form id="url-form" class="inline" method="post" action="${urlForm.action(`${path}/url`, 'url')}">${csrfField(token)}
<label>URL <input type="url" name="url" value="${state.url ? urlWithoutCredentials(state.url.typed) : endpoint.url}" required maxlength="2000"></label>
<button type="submit">Save URL</button></form>
<p class="muted">Deliveries still owed to this endpoint go to the new URL at once.</p>
<form class="inline" method="post" action="${path}/rotate-secret">${csrfField(token)}<button type="submit" class="secondary">Rotate signing secret</button></form>
<h2>Delivery log</h2>
<form class="inline" method="get" action="${path}">
<label>Status <select name="status"><option value="">any</option>${DELIVERY_STATUSES.map((s) => html`<option value="${s}"${status === s ? html` selected` : ''}>${s}</option>`)}</select></label>
<button type="submit">Show</button></form>
${rows.length ? html`<table><thead><tr><th scope="col">Event</th><th scope="col">Occurred</th><th scope="col">Delivery</th><th scope="col">Attempts</th><th scope="col"><span class="muted">Actions</span></th></tr></thead><tbody>${rows}</tbody></table>` : html`<p class="muted">No deliveries${status ? ' with that status' : ' yet'}.</p>`}
${pager(path, { status }, log.nextCursor, !cursor)}`;
  };

  const send = async (req: Request, res: Response, body: SafeHtml, status = 200) =>
    sendAppPage(ctx, req, res, { title: 'Webhook endpoint', section: 'settings', body, status });
  // A 4xx shows on the endpoint's page, which must itself exist (else its own 404 goes to the error page).
  const onForm = formRunner(async (req, res, problem) => send(req, res, await page(req, { error: problem.message }), problem.status));

  router.get('/settings/webhooks/:id', async (req, res) => send(req, res, await page(req)));

  router.post('/settings/webhooks/:id/rotate-secret', async (req, res) => {
    const auth = signedInAdmin(req, 'manage webhooks');
    await onForm(req, res, async () => {
      const rotated = await webhooks.rotateSecret(auth, endpointId(req));
      await send(req, res, await page(req, { secret: rotated.secret }));
    });
  });

  // PATCH /api/webhooks/:id's `url`, through the same schema and service (the SSRF guard, https in
  // production, the caller vouching for the endpoint): a refusal is the page again, with its 4xx.
  router.post('/settings/webhooks/:id/url', async (req, res) => {
    const auth = signedInAdmin(req, 'manage webhooks');
    const typed = formInput(req).url ?? '';
    const urlForm = formRunner(async (req, res, problem) => send(req, res, await page(req, { url: { error: problem.message, typed } }), problem.status));
    await urlForm(req, res, async () => {
      const id = endpointId(req);
      await webhooks.update(auth, id, parseInput(updateWebhookBody, { url: typed }));
      res.redirect(303, `/app/settings/webhooks/${id}?notice=saved`);
    });
  });

  router.post('/settings/webhooks/:id/events/:eventId/redeliver', async (req, res) => {
    const auth = signedInAdmin(req, 'manage webhooks');
    await onForm(req, res, async () => {
      const id = endpointId(req);
      await webhooks.redeliver(auth, id, parseId(req.params.eventId, 'Event'));
      res.redirect(303, `/app/settings/webhooks/${id}?notice=redelivery_queued`);
    });
  });

  return router;
}
