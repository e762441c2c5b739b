import { Readable } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { AuthContext } from '../auth/auth.service.js';
import { ImportStoppedError, type ImportReport } from '../contacts/contacts-import.js';
import { parseInput } from '../http/validate.js';
import { attributeName, COLUMN_TARGETS, guessChoice, parseCsvText, TARGET_LABELS, toMapping, type ColumnMapping } from './csv-mapping.js';
import { errorNotice, formProblem } from './forms.js';
import { html, type SafeHtml } from './html.js';
import { csrfField, renderPublicPage } from './layout.js';
import { sendAppPage, signedIn, WEB_UPLOAD_MAX_BYTES, type WebContext } from './web.middleware.js';

const PREVIEW_ROWS = 5;
const uploadForm = z.object({ file: z.string().min(1, 'choose a CSV file') });
const importForm = z.object({ csv: z.string().min(1) });

/** An import's counts (finished, or stopped part way). */
const reportTable = (report: ImportReport): SafeHtml => html`<table><tbody>
<tr><th scope="row">Rows</th><td>${report.rows}</td></tr><tr><th scope="row">Created</th><td>${report.created}</td></tr>
<tr><th scope="row">Updated</th><td>${report.updated}</td></tr><tr><th scope="row">Unchanged</th><td>${report.unchanged}</td></tr>
<tr><th scope="row">Failed</th><td>${report.failed}</td></tr><tr><th scope="row">Consent records added</th><td>${report.consents}</td></tr>
${report.optOutsKept ? html`<tr><th scope="row">Opt-outs kept</th><td>${report.optOutsKept} <span class="muted">(the file said opted in, but these people opted out themselves: only they can undo that)</span></td></tr>` : ''}
</tbody></table>`;

/**
 * CSV import from the browser in three steps: upload, a preview of the first rows with a
 * column-mapping step, then the import through the same service as POST /api/contacts/import
 * (the mapped file is rewritten with the service's headers). The file travels back in the
 * mapping form, so nothing is kept on the server between steps.
 */
export function importPages(ctx: WebContext): Router {
  const router = Router();
  const { contacts } = ctx.services;

  /** The import itself: the same service and the same consent rules as POST /api/contacts/import (P-10). */
  const importMapped = (auth: AuthContext, text: string, mapping: ColumnMapping) => contacts.importCsv(auth, Readable.from([text]), { mapping });

  const uploadPage = (req: Request, error?: string) => html`<h1>Import contacts</h1>${errorNotice(error)}
<p>A CSV file whose first line names the columns, one of them the email address (up to ${WEB_UPLOAD_MAX_BYTES / 1024 / 1024} MB here; larger files through <code>POST /api/contacts/import</code>).
Importing the same file again changes nothing: contacts are matched on their address.</p>
<p>Consent columns: <code>consent</code> (<code>opted_in</code> or <code>opted_out</code>), optional <code>consent_source</code> (default <code>csv import</code>) and <code>consent_at</code>. Each is recorded in the contact's consent history with the policy version in force (P-10); marketing campaigns mail only opted-in contacts.</p>
<form class="stack" method="post" action="/app/contacts/import/preview" enctype="multipart/form-data">${csrfField(req.browser!.csrfToken)}
<label>CSV file <input type="file" name="file" accept=".csv,text/csv" required></label>
<div class="actions"><button type="submit">Preview</button><a href="/app/contacts">Cancel</a></div></form>`;

  const mappingPage = (req: Request, text: string, error?: string): SafeHtml => {
    const csv = parseCsvText(text);
    const preview = csv.rows.slice(0, PREVIEW_ROWS);
    return html`<h1>Check the columns</h1>${errorNotice(error)}
<p>${csv.rows.length} rows. The first ${preview.length} are shown; say what each column is.</p>
<form method="post" action="/app/contacts/import" enctype="multipart/form-data">${csrfField(req.browser!.csrfToken)}
<input type="hidden" name="csv" value="${text}">
<table><thead><tr>${csv.header.map((h, i) => html`<th scope="col"><label>${h}<select name="map${i}">${COLUMN_TARGETS.map((t) => html`<option value="${t}"${guessChoice(h) === t ? html` selected` : ''}>${t === 'attribute' ? `Attribute “${attributeName(h)}”` : TARGET_LABELS[t]}</option>`)}</select></label></th>`)}</tr></thead>
<tbody>${preview.map((row) => html`<tr>${csv.header.map((_h, i) => html`<td>${row[i] ?? ''}</td>`)}</tr>`)}</tbody></table>
<div class="actions"><button type="submit">Import ${csv.rows.length} rows</button><a href="/app/contacts/import">Choose another file</a></div></form>`;
  };

  /**
   * The session ended while the file was written (signed out in another tab, removed, a password
   * changed): the import stopped before its next batch (contacts.importCsv rechecks the caller per
   * batch). Said on a page of its own, outside the app's frame (nobody is signed in), with what
   * was written and how to finish; the browser's cookie is left alone (it may hold a new session).
   */
  const sendStopped = (req: Request, res: Response, stopped: ImportStoppedError) => {
    const report = stopped.written;
    req.log.info({ code: stopped.code, rows: report.rows, created: report.created, updated: report.updated }, 'contacts import stopped: the session ended');
    const body = html`<h1>Import stopped</h1>
<p role="alert">Your session ended while the file was being imported (you signed out, or your access to the workspace changed), so the import stopped there.</p>
<p>The first ${report.rows} rows of the file were dealt with; nothing after them was imported.</p>
${reportTable(report)}
<p>To finish, sign in and import the same file again: contacts are matched on their address, so the rows already imported come out unchanged.</p>
<p class="muted">Code: <code>${stopped.code}</code></p>
<div class="actions"><a class="button" href="/signin?next=%2Fapp%2Fcontacts%2Fimport">Sign in</a></div>`;
    res.status(stopped.status).set('Cache-Control', 'no-store').type('html').send(renderPublicPage('Import stopped', body, ctx.sandboxInboxUrl));
  };

  router.get('/contacts/import', async (req, res) => {
    await sendAppPage(ctx, req, res, { title: 'Import contacts', section: 'contacts', body: uploadPage(req) });
  });

  router.post('/contacts/import/preview', async (req, res) => {
    try {
      const { file } = parseInput(uploadForm, req.body ?? {});
      await sendAppPage(ctx, req, res, { title: 'Check the columns', section: 'contacts', body: mappingPage(req, file) });
    } catch (error) {
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { title: 'Import contacts', section: 'contacts', status: problem.status, body: uploadPage(req, problem.message) });
    }
  });

  router.post('/contacts/import', async (req, res) => {
    const auth = signedIn(req);
    const body = (req.body ?? {}) as Record<string, string>;
    const form = parseInput(importForm, body);
    const csv = parseCsvText(form.csv);
    const mapping = toMapping(csv.header, csv.header.map((_h, i) => z.enum(COLUMN_TARGETS).catch('ignore').parse(body[`map${i}`])));
    let report;
    try {
      report = await importMapped(auth, form.csv, mapping);
    } catch (error) {
      if (error instanceof ImportStoppedError) return sendStopped(req, res, error);
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { title: 'Check the columns', section: 'contacts', status: problem.status, body: mappingPage(req, form.csv, problem.message) });
      return;
    }
    await sendAppPage(ctx, req, res, {
      title: 'Import finished',
      section: 'contacts',
      body: html`<h1>Import finished</h1>
${reportTable(report)}
${report.errors.length ? html`<h2>Rows with problems</h2><ul>${report.errors.map((p) => html`<li>line ${p.line}: ${p.code}: ${p.message}</li>`)}</ul>${report.errorsTruncated ? html`<p class="muted">Only the first problems are listed.</p>` : ''}` : ''}
<div class="actions"><a class="button" href="/app/contacts">See the contacts</a><a href="/app/contacts/import">Import another file</a></div>`,
    });
  });

  return router;
}
