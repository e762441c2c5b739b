import { Router, type Request, type Response } from 'express';
import { parseId } from '../http/params.js';
import { parseInput, startOfCalendarDay } from '../http/validate.js';
import { DATA_KINDS } from '../privacy/export.service.js';
import { legalRequestBody, streamJson } from '../privacy/privacy.routes.js';
import { checked, errorNotice, formInput, formRunner, ticked } from './forms.js';
import { when } from './format.js';
import { html, type SafeHtml } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedInAdmin, type WebContext } from './web.middleware.js';
import { DAY_MS } from '../time.js';
import { refuseCrossSiteDownload } from './fetch-site.js';

const PATH = '/app/settings/legal-requests';

/** A textarea of ids or addresses: one per line (commas and spaces separate too). */
const listOf = (value: string | undefined) => (value ?? '').split(/[\s,]+/).filter(Boolean);

/** What a refused form sent, shown again: its text fields and its ticked boxes. */
interface FormValues {
  fields: Record<string, string>;
  mailboxIds: string[];
  kinds: string[];
}

/**
 * The form → the API's body. Date fields are whole UTC days and `to` is inclusive on the page,
 * while the scope is `[from, to)`: `to` becomes the start of the next day. Empty dates stay
 * absent so the API's schema names them.
 */
function legalRequestFromForm(req: Request) {
  const input = formInput(req);
  // A day that does not exist (2026-02-30) or another text is passed on as typed: the API's schema refuses it, naming the field.
  const day = (value: string | undefined, plusDays = 0) => {
    const start = value ? startOfCalendarDay(value) : undefined;
    return start ? new Date(start.getTime() + plusDays * DAY_MS).toISOString() : value;
  };
  return {
    authority: input.authority ?? '',
    legalBasis: input.legalBasis ?? '',
    reference: input.reference ?? '',
    scope: {
      contactIds: listOf(input.contactIds),
      addresses: listOf(input.addresses),
      mailboxIds: ticked(req, 'mailboxIds'),
      from: day(input.from),
      to: day(input.to, 1),
      kinds: ticked(req, 'kinds'),
    },
  };
}

/**
 * Legal requests (P-16), owners and admins only as in /api/privacy/legal-requests: the list,
 * recording one with its exact scope, and its disclosure as a download — the same service,
 * schema and `streamJson` as the API (each disclosure audited `legal.disclosed`).
 */
export function legalRequestPages(ctx: WebContext): Router {
  const router = Router();
  const { legalRequests, mailboxes } = ctx.services;
  const WHAT = 'see and record legal requests';

  const page = async (req: Request, state: { error?: string; values?: FormValues } = {}): Promise<SafeHtml> => {
    const auth = signedInAdmin(req, WHAT);
    const [requests, boxes] = await Promise.all([legalRequests.list(auth), mailboxes.list(auth)]);
    const token = req.browser!.csrfToken;
    const v = state.values?.fields ?? {};
    const tickedBefore = (group: 'mailboxIds' | 'kinds', value: string) => checked(state.values?.[group].includes(value) ?? false);
    return html`<h1>Legal requests</h1>
<p>An authority's request for data, recorded with its legal basis and exact scope. A disclosure holds that scope and nothing more, and every disclosure is logged.</p>
${requests.length ? html`<table><thead><tr><th scope="col">Reference</th><th scope="col">Authority and basis</th><th scope="col">Scope</th><th scope="col">Recorded</th><th scope="col">Disclosure</th></tr></thead><tbody>
${requests.map((r) => html`<tr><td>${r.reference}</td><td>${r.authority}<br><span class="muted">${r.legalBasis}</span></td>
<td>${r.scope.contactIds.length} contacts, ${r.scope.addresses.length + r.scope.erasedAddresses} addresses${r.scope.erasedAddresses ? ` (${r.scope.erasedAddresses} erased since)` : ''}, ${r.scope.mailboxIds.length} mailboxes<br><span class="muted">${when(r.scope.from)} – ${when(r.scope.to)}: ${r.scope.kinds.join(', ')}</span></td>
<td>${when(r.createdAt)}</td>
<td><a href="${PATH}/${r.id}/disclosure.json" download>Download</a>${r.lastDisclosedAt ? html`<br><span class="muted">last ${when(r.lastDisclosedAt)}</span>` : ''}</td></tr>`)}
</tbody></table>` : html`<p class="muted">No legal requests recorded.</p>`}
<h2>Record a legal request</h2>${errorNotice(state.error)}
<form class="stack" method="post" action="${PATH}">${csrfField(token)}
<label>Authority <input name="authority" value="${v.authority ?? ''}" required maxlength="200"></label>
<label>Legal basis <input name="legalBasis" value="${v.legalBasis ?? ''}" required maxlength="500"></label>
<label>Reference <input name="reference" value="${v.reference ?? ''}" required maxlength="200"></label>
<label>Addresses <span class="muted">(one per line)</span><textarea name="addresses">${v.addresses ?? ''}</textarea></label>
<label>Contact ids <span class="muted">(one per line)</span><textarea name="contactIds">${v.contactIds ?? ''}</textarea></label>
${boxes.length ? html`<fieldset><legend>Mailboxes</legend>${boxes.map((b) => html`<label><input type="checkbox" name="mailboxIds" value="${b.id}"${tickedBefore('mailboxIds', b.id)}> ${b.email}</label> `)}</fieldset>` : ''}
<label>From <span class="muted">(UTC day)</span><input type="date" name="from" value="${v.from ?? ''}" required></label>
<label>To <span class="muted">(UTC day, included)</span><input type="date" name="to" value="${v.to ?? ''}" required></label>
<fieldset><legend>Data kinds</legend>${DATA_KINDS.map((k) => html`<label><input type="checkbox" name="kinds" value="${k}"${tickedBefore('kinds', k)}> ${k}</label> `)}</fieldset>
<div class="actions"><button type="submit">Record the request</button></div></form>`;
  };

  const send = async (req: Request, res: Response, body: SafeHtml, status = 200) => sendAppPage(ctx, req, res, { title: 'Legal requests', section: 'settings', body, status });
  const onForm = formRunner(async (req, res, problem) => {
    const values = { fields: formInput(req), mailboxIds: ticked(req, 'mailboxIds'), kinds: ticked(req, 'kinds') };
    await send(req, res, await page(req, { error: problem.message, values }), problem.status);
  });

  router.get('/settings/legal-requests', async (req, res) => send(req, res, await page(req)));

  router.post('/settings/legal-requests', async (req, res) => {
    const auth = signedInAdmin(req, WHAT);
    await onForm(req, res, async () => {
      await legalRequests.record(auth, parseInput(legalRequestBody, legalRequestFromForm(req)));
      res.redirect(303, `${PATH}?notice=saved`);
    });
  });

  router.get('/settings/legal-requests/:id/disclosure.json', refuseCrossSiteDownload, async (req, res) => {
    const auth = signedInAdmin(req, WHAT);
    const id = parseId(req.params.id, 'Legal request');
    await streamJson(res, `inboxtrail-legal-disclosure-${id}.json`, await legalRequests.disclose(auth, id));
  });

  return router;
}
