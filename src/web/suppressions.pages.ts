import { Router } from 'express';
import { suppressionReasonEnum } from '../db/schema.js';
import { ForbiddenError } from '../errors.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { addSuppressionBody, listSuppressionsQuery, removeSuppressionBody } from '../suppression/suppression.routes.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { pager, when } from './format.js';
import { html } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

const PAGE_SIZE = 50;
const REASON_LABELS: Record<string, string> = {
  unsubscribe: 'the recipient unsubscribed',
  bounce: 'mail bounced',
  complaint: 'the recipient complained',
  manual: 'added by a member',
};

/**
 * The suppression list: who is never mailed by this workspace, and why. Any member adds;
 * owners and admins remove, with a note (and the new consent's source when the entry was
 * the recipient's own wish) — the same rules as /api/suppressions, from the same service.
 */
export function suppressionPages(ctx: WebContext): Router {
  const router = Router();
  const { suppressions } = ctx.services;

  const listPage = async (req: Parameters<typeof signedIn>[0], state: { error?: string; values?: Record<string, string> } = {}) => {
    const auth = signedIn(req);
    const filters = { email: typeof req.query.email === 'string' && req.query.email ? req.query.email : undefined, reason: typeof req.query.reason === 'string' && req.query.reason ? req.query.reason : undefined };
    const query = parseInput(listSuppressionsQuery, { ...filters, cursor: req.query.cursor, limit: String(PAGE_SIZE) });
    const page = await suppressions.list(auth, query);
    const token = req.browser!.csrfToken;
    const admin = auth.role !== 'member';
    const rows = page.suppressions.map(
      (s) => html`<tr><td>${s.email}</td><td>${s.scope === 'all' ? 'all mail' : s.scope}</td><td>${REASON_LABELS[s.reason] ?? s.reason}${s.heldReason ? html`, held by ${REASON_LABELS[s.heldReason] ?? s.heldReason}` : ''}<br><span class="muted">via ${s.source}</span></td><td>${when(s.createdAt)}</td>
<td>${admin ? html`<form class="stack" method="post" action="/app/suppressions/${s.id}/remove">${csrfField(token)}
<label>Note <input name="note" required></label>
${s.reason === 'unsubscribe' || s.reason === 'complaint' ? html`<label>Where the new consent came from <input name="consentSource" required></label>` : ''}
<button type="submit" class="secondary">Remove</button></form>` : html`<span class="muted">admins remove</span>`}</td></tr>`,
    );
    return html`<h1>Suppression list</h1>
<p>Nobody on this list gets mail from this workspace — campaigns and 1:1 mail alike.</p>${errorNotice(state.error)}
<form class="inline" method="get" action="/app/suppressions" role="search">
<label>Address <input type="email" name="email" value="${filters.email ?? ''}"></label>
<label>Reason <select name="reason"><option value="">any</option>${suppressionReasonEnum.enumValues.map((r) => html`<option value="${r}"${filters.reason === r ? html` selected` : ''}>${r}</option>`)}</select></label>
<button type="submit">Search</button></form>
${page.suppressions.length ? html`<table><thead><tr><th scope="col">Address</th><th scope="col">Scope</th><th scope="col">Reason</th><th scope="col">Since</th><th scope="col">Remove</th></tr></thead><tbody>${rows}</tbody></table>` : html`<p>No entries${filters.email || filters.reason ? ' match' : ' yet'}.</p>`}
${pager('/app/suppressions', filters, page.nextCursor, !query.cursor)}
<h2>Add an address</h2>
<form class="stack" method="post" action="/app/suppressions">${csrfField(token)}
<label>Address <input type="email" name="email" value="${state.values?.email ?? ''}" required></label>
<label>Reason <select name="reason"><option value="manual">manual</option><option value="complaint">complaint</option></select></label>
<label>Note <input name="note" value="${state.values?.note ?? ''}"></label>
<div class="actions"><button type="submit">Add to the list</button></div></form>`;
  };

  router.get('/suppressions', async (req, res) => {
    await sendAppPage(ctx, req, res, { title: 'Suppression list', section: 'suppressions', body: await listPage(req) });
  });

  router.post('/suppressions', async (req, res) => {
    const input = formInput(req);
    try {
      await suppressions.add(signedIn(req), parseInput(addSuppressionBody, input));
      res.redirect(303, '/app/suppressions?notice=suppressed');
    } catch (error) {
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { title: 'Suppression list', section: 'suppressions', status: problem.status, body: await listPage(req, { error: problem.message, values: input }) });
    }
  });

  router.post('/suppressions/:id/remove', async (req, res) => {
    const auth = signedIn(req);
    if (auth.role === 'member') throw new ForbiddenError('Only owners and admins remove addresses from the suppression list');
    try {
      await suppressions.remove(auth, parseId(req.params.id, 'Suppression'), parseInput(removeSuppressionBody, formInput(req)));
      res.redirect(303, '/app/suppressions?notice=unsuppressed');
    } catch (error) {
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { title: 'Suppression list', section: 'suppressions', status: problem.status, body: await listPage(req, { error: problem.message }) });
    }
  });

  return router;
}
