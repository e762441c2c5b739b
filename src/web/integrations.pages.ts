import { Router, type Request, type Response } from 'express';
import { createApiKeyBody } from '../api-keys/api-keys.routes.js';
import { API_SCOPES } from '../http/api-spec.js';
import { parseId } from '../http/params.js';
import { isoInstant, parseInput, startOfCalendarDay } from '../http/validate.js';
import { reportQuery, sendReportCsv } from '../privacy/compliance.routes.js';
import { WEBHOOK_EVENT_TYPES } from '../webhooks/events.js';
import { createWebhookBody } from '../webhooks/webhooks.schemas.js';
import { checked, formInput, formRunner, pageForms, ticked, urlWithoutCredentials, type FormError } from './forms.js';
import { when } from './format.js';
import { html, type SafeHtml } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, signedInAdmin, type WebContext } from './web.middleware.js';
import { DAY_MS } from '../time.js';
import { refuseCrossSiteDownload } from './fetch-site.js';

const REPORT_DEFAULT_DAYS = 90;

const day = (d: Date) => d.toISOString().slice(0, 10);

/** What a refused form sent, shown on that form again; the other forms stay as on a fresh page. */
interface SentForms {
  apiKey?: { name: string; scopes: string[] };
  webhook?: { url: string; eventTypes: string[] };
  /** The report's days as typed ('' for one left empty). */
  report?: { from: string; to: string };
}

/**
 * The page's forms, by where a refusal shows: above the create form, or above the list whose
 * row buttons (revoke; enable, disable, delete) were sent, since that row may be gone.
 */
type IntegrationsForm = 'api-keys' | 'new-api-key' | 'webhooks' | 'new-webhook' | 'compliance-report';

interface PageState {
  /** A 4xx of one form, shown above that form only. */
  error?: FormError<IntegrationsForm>;
  /** A secret shown on this answer only (an API key or a webhook signing secret), never in a URL. */
  secret?: { label: string; value: string };
  sent?: SentForms;
}

/**
 * Settings → integrations and privacy: API keys, webhook endpoints, the compliance report
 * (owners/admins); one's own data and account closure are on the account page
 * (account.pages.ts). The same services and schemas as /api/api-keys, /api/webhooks and
 * /api/compliance/report.
 */
export function integrationPages(ctx: WebContext): Router {
  const router = Router();
  const { apiKeys, webhooks, compliance } = ctx.services;

  const page = async (req: Request, state: PageState = {}): Promise<SafeHtml> => {
    const auth = signedIn(req);
    const admin = auth.role !== 'member';
    const token = req.browser!.csrfToken;
    const [keys, endpoints] = admin ? await Promise.all([apiKeys.list(auth), webhooks.list(auth).then((r) => r.endpoints)]) : [[], []];
    const now = new Date();
    const { apiKey: sentKey, webhook: sentHook, report: sentReport } = state.sent ?? {};
    const { notice: problem, action } = pageForms(state.error);
    // A fresh key form has `read` ticked; a refused one shows exactly what was ticked.
    const scopeTicked = (scope: string) => checked(sentKey ? sentKey.scopes.includes(scope) : scope === 'read');
    return html`<h1>Integrations and privacy</h1>
${state.secret ? html`<div class="notice" role="status"><p>${state.secret.label} (it is shown only now; store it somewhere safe):</p><p><code>${state.secret.value}</code></p></div>` : ''}
${admin ? html`<h2 id="api-keys">API keys</h2>${problem('api-keys')}
${keys.length ? html`<table><thead><tr><th scope="col">Name</th><th scope="col">Scopes</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Status</th></tr></thead><tbody>
${keys.map((k) => html`<tr><td>${k.name} <span class="muted">${k.prefix}…</span></td><td>${k.scopes.join(', ')}</td><td>${when(k.createdAt)}</td><td>${k.lastUsedAt ? when(k.lastUsedAt) : 'never'}</td>
<td>${k.revokedAt ? html`revoked ${when(k.revokedAt)}` : html`<form class="inline" method="post" action="${action(`/app/settings/api-keys/${k.id}/revoke`, 'api-keys')}">${csrfField(token)}<button type="submit" class="secondary">Revoke</button></form>`}</td></tr>`)}
</tbody></table>` : html`<p class="muted">No API keys yet.</p>`}
${problem('new-api-key')}<form id="new-api-key" class="stack" method="post" action="${action('/app/settings/api-keys', 'new-api-key')}">${csrfField(token)}
<label>Name <input name="name" value="${sentKey?.name ?? ''}" required maxlength="200"></label>
<fieldset><legend>Scopes</legend>${API_SCOPES.map((s) => html`<label><input type="checkbox" name="scopes" value="${s}"${scopeTicked(s)}> ${s}</label> `)}</fieldset>
<div class="actions"><button type="submit">Create key</button></div></form>
<h2 id="webhooks">Webhooks</h2>${problem('webhooks')}
${endpoints.length ? html`<table><thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Status</th><th scope="col"><span class="muted">Actions</span></th></tr></thead><tbody>
${endpoints.map((e) => html`<tr><td><a href="/app/settings/webhooks/${e.id}">${e.url}</a></td><td>${e.eventTypes.join(', ')}</td><td>${e.enabled ? e.status : 'disabled'}${e.needsHttpsUrl ? html` <span class="status bad">needs an https URL</span>` : ''}</td>
<td><a class="button secondary" href="/app/settings/webhooks/${e.id}#url">Change URL</a>
<form class="inline" method="post" action="${action(`/app/settings/webhooks/${e.id}/${e.enabled ? 'disable' : 'enable'}`, 'webhooks')}">${csrfField(token)}<button type="submit" class="secondary">${e.enabled ? 'Disable' : 'Enable'}</button></form>
<form class="inline" method="post" action="${action(`/app/settings/webhooks/${e.id}/delete`, 'webhooks')}">${csrfField(token)}<button type="submit" class="secondary">Delete</button></form></td></tr>`)}
</tbody></table>` : html`<p class="muted">No webhook endpoints yet.</p>`}
${problem('new-webhook')}<form id="new-webhook" class="stack" method="post" action="${action('/app/settings/webhooks', 'new-webhook')}">${csrfField(token)}
<label>URL <input type="url" name="url" value="${urlWithoutCredentials(sentHook?.url ?? '')}" required maxlength="2000"></label>
<fieldset><legend>Event types</legend>${WEBHOOK_EVENT_TYPES.map((t) => html`<label><input type="checkbox" name="eventTypes" value="${t}"${checked(sentHook?.eventTypes.includes(t) ?? false)}> ${t}</label> `)}</fieldset>
<div class="actions"><button type="submit">Add endpoint</button></div></form>
<h2 id="compliance-report">Compliance report</h2>
${problem('compliance-report')}<form id="compliance-report-range" class="inline" method="get" action="${action('/app/settings/compliance-report.csv', 'compliance-report')}">
<label>From <input type="date" name="from" value="${sentReport ? sentReport.from : day(new Date(now.getTime() - REPORT_DEFAULT_DAYS * DAY_MS))}"></label>
<label>To <input type="date" name="to" value="${sentReport ? sentReport.to : day(now)}"></label>
<button type="submit">Download CSV</button></form>
<h2 id="legal-requests">Legal requests</h2>
<p><a href="/app/settings/legal-requests">Legal requests</a>: record an authority's request with its exact scope, download its disclosure.</p>` : ''}
<h2 id="your-data">Your data</h2>
<p>Downloading your data, your name, password and login address, and closing your account are on <a href="/app/account">your account page</a>.</p>`;
  };

  const send = async (req: Request, res: Response, body: SafeHtml, status = 200) =>
    sendAppPage(ctx, req, res, { title: 'Integrations and privacy', section: 'settings', body, status });
  /**
   * A refused form: the page again with the message above that form, the API's status, and the
   * values of that form as sent (if it has any to keep).
   */
  const onForm = (form: IntegrationsForm, sent?: SentForms) =>
    formRunner(async (req, res, problem) => send(req, res, await page(req, { error: { form, message: problem.message }, sent }), problem.status));

  router.get('/settings/integrations', async (req, res) => send(req, res, await page(req)));

  router.post('/settings/api-keys', async (req, res) => {
    const auth = signedInAdmin(req, 'manage API keys');
    const sent = { name: formInput(req).name ?? '', scopes: ticked(req, 'scopes') };
    await onForm('new-api-key', { apiKey: sent })(req, res, async () => {
      const created = await apiKeys.create(auth, parseInput(createApiKeyBody, sent));
      await send(req, res, await page(req, { secret: { label: `API key "${created.name}" created`, value: created.key } }), 201);
    });
  });

  router.post('/settings/api-keys/:id/revoke', async (req, res) => {
    const auth = signedInAdmin(req, 'manage API keys');
    await onForm('api-keys')(req, res, async () => {
      await apiKeys.revoke(auth, parseId(req.params.id, 'API key'));
      res.redirect(303, '/app/settings/integrations?notice=saved');
    });
  });

  router.post('/settings/webhooks', async (req, res) => {
    const auth = signedInAdmin(req, 'manage webhooks');
    const sent = { url: formInput(req).url ?? '', eventTypes: ticked(req, 'eventTypes') };
    await onForm('new-webhook', { webhook: sent })(req, res, async () => {
      const created = await webhooks.create(auth, parseInput(createWebhookBody, sent));
      await send(req, res, await page(req, { secret: { label: `Webhook endpoint added; its signing secret`, value: created.secret } }), 201);
    });
  });

  for (const [action, enabled] of [['enable', true], ['disable', false]] as const) {
    router.post(`/settings/webhooks/:id/${action}`, async (req, res) => {
      const auth = signedInAdmin(req, 'manage webhooks');
      await onForm('webhooks')(req, res, async () => {
        await webhooks.update(auth, parseId(req.params.id, 'Webhook endpoint'), { enabled });
        res.redirect(303, '/app/settings/integrations?notice=saved');
      });
    });
  }

  router.post('/settings/webhooks/:id/delete', async (req, res) => {
    const auth = signedInAdmin(req, 'manage webhooks');
    await onForm('webhooks')(req, res, async () => {
      await webhooks.remove(auth, parseId(req.params.id, 'Webhook endpoint'));
      res.redirect(303, '/app/settings/integrations?notice=saved');
    });
  });

  // Date fields (YYYY-MM-DD) → the API's instants: from the start of `from` to the end of `to` (UTC).
  router.get('/settings/compliance-report.csv', refuseCrossSiteDownload, async (req, res) => {
    const auth = signedInAdmin(req, 'read the compliance report');
    const dateParam = (name: string) => (typeof req.query[name] === 'string' && req.query[name] ? (req.query[name] as string) : undefined);
    const fromDay = dateParam('from');
    const toDay = dateParam('to');
    // A refused range is the page again, the message above the report's form with the days as typed;
    // the report's first line is made before the headers go out (sendReportCsv), so a refusal
    // there is still that page.
    await onForm('compliance-report', { report: { from: fromDay ?? '', to: toDay ?? '' } })(req, res, async () => {
      // Anything but a real day (2026-02-30, an instant, other text) is passed on as typed: the report's
      // schema takes an instant and refuses the rest, naming the field. The default `from` counts back
      // from `to` when that is a day or a valid instant, else from now.
      const toStart = toDay ? startOfCalendarDay(toDay) : undefined;
      const fromStart = fromDay ? startOfCalendarDay(fromDay) : undefined;
      const toInstant = toDay && !toStart ? isoInstant.safeParse(toDay) : undefined;
      const toAt = toStart ? new Date(toStart.getTime() + DAY_MS - 1) : toInstant?.success ? toInstant.data : new Date();
      const to = toDay && !toStart ? toDay : toAt.toISOString();
      const from = fromDay ? (fromStart?.toISOString() ?? fromDay) : new Date(toAt.getTime() - REPORT_DEFAULT_DAYS * DAY_MS).toISOString();
      const range = compliance.rangeOf(parseInput(reportQuery, { from, to }));
      res.setHeader('Cache-Control', 'no-store');
      await sendReportCsv(res, compliance, auth, range);
    });
  });

  return router;
}
