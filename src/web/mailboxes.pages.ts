import { Router } from 'express';
import { z } from 'zod';
import { setConnectCookie } from '../gmail/gmail.routes.js';
import type { SyncGap } from '../db/schema.js';
import { describeSyncGap } from '../gmail/sync-health.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { html } from './html.js';
import { cameFromOurPage } from './fetch-site.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

const connectQuery = z.object({
  sync: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  loginHint: z.email().max(254).optional(),
});
const continueQuery = connectQuery.extend({ acknowledge: z.string().max(50) });

const when = (date: Date | string | null | undefined) => (date ? new Date(date).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—');

type MailboxSync = { lastError: string | null; lastGap: SyncGap | null };

/**
 * The last pass's error, and the latest resync gap for as long as the mailbox exists: a later
 * sync clears the error, but the mail the resync did not read stays unread.
 */
function syncProblems(sync: MailboxSync) {
  const gap = sync.lastGap;
  const error = sync.lastError && !(gap && sync.lastError === describeSyncGap(gap)) ? html`<br><span class="status bad">${sync.lastError}</span>` : '';
  const gapNote = gap
    ? html`<br><span class="status bad">Not read: mail between ${when(gap.since)} and the oldest of the ${gap.read} newest messages a resync read on ${when(gap.at)} (more had arrived than a resync reads). Replies and bounces in it were not seen.</span>`
    : '';
  return html`${error}${gapNote}`;
}

/**
 * Mailboxes: each connected Gmail with its health, and connecting one from the browser —
 * the Limited Use disclosure first (P-05), then Google's consent, then back here (the
 * OAuth callback in gmail.routes.ts redirects browsers to this page).
 */
export function mailboxPages(ctx: WebContext): Router {
  const router = Router();
  const { mailboxes, pacer } = ctx.services;

  router.get('/mailboxes', async (req, res) => {
    const auth = signedIn(req);
    const list = await mailboxes.list(auth);
    const pauses = await Promise.all(list.map((m) => pacer.pauseEndsAt(m.id)));
    const current = await ctx.services.policyVersions.currentDisclosure();
    const rows = list.map((m, i) => {
      const reconnect = new URLSearchParams({ loginHint: m.email, sync: String(m.sync.enabled) });
      // The disclosure this mailbox agreed to is still the current one: one click goes straight to Google.
      if (m.disclosureVersion === current.version) reconnect.set('acknowledge', current.version);
      const reconnectHref = `/app/mailboxes/connect${reconnect.has('acknowledge') ? '/continue' : ''}?${reconnect}`;
      const paused = pauses[i];
      return html`<tr>
<td>${m.email}<br><span class="muted">${m.kind === 'consumer' ? 'Gmail' : 'Google Workspace'}</span></td>
<td>${m.status === 'active' ? html`<span class="status good">active</span>` : html`<span class="status bad">${m.status}</span>
  ${m.statusReason ? html`<br><span class="muted">${m.statusReason}</span>` : ''}
  <br><a class="button" href="${reconnectHref}">Reconnect</a>`}</td>
<td>${m.sync.enabled
        ? html`on · last ${when(m.sync.lastSuccessAt)}<br><span class="muted">${m.sync.messagesSeen} messages seen, ${m.sync.health.kept} kept</span>${syncProblems(m.sync)}`
        : html`off`}</td>
<td>${m.sentToday} of ${m.dailyBudget} sent in the last 24 h<br><span class="muted">pace: at most ${ctx.config.gmail.sendsPerMinute} a minute${paused ? html`; paused by Gmail until ${when(new Date(paused))}` : ''}</span></td>
<td><form class="inline" method="post" action="/app/mailboxes/${m.id}/disconnect">${csrfField(req.browser!.csrfToken)}<button type="submit" class="secondary">Disconnect</button></form></td>
</tr>`;
    });
    await sendAppPage(ctx, req, res, {
      title: 'Mailboxes',
      section: 'mailboxes',
      body: html`<h1>Mailboxes</h1>
${list.length === 0 ? html`<p>No Gmail mailbox is connected yet. Connect one to send mail from inboxtrail.</p>` : html`<table>
<thead><tr><th scope="col">Mailbox</th><th scope="col">Status</th><th scope="col">Sync</th><th scope="col">Today</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
<tbody>${rows}</tbody></table>`}
<div class="actions"><a class="button" href="/app/mailboxes/connect">Connect Gmail</a>
<a class="button secondary" href="/app/mailboxes/connect?sync=true">Connect Gmail with sync (timelines, replies)</a></div>`,
    });
  });

  /** P-05: the disclosure, right before Google's consent; the version shown travels with the next step. */
  router.get('/mailboxes/connect', async (req, res) => {
    const query = parseInput(connectQuery, req.query, '(query)');
    // The text of the policy version in force, as published in the database (P-18).
    const disclosure = await ctx.services.policyVersions.currentDisclosure();
    const next = new URLSearchParams({ sync: String(query.sync), acknowledge: disclosure.version });
    if (query.loginHint) next.set('loginHint', query.loginHint);
    await sendAppPage(ctx, req, res, {
      title: 'Connect Gmail',
      section: 'mailboxes',
      body: html`<h1>${disclosure.title}</h1>
<p>Before Google asks for your permission, here is what inboxtrail does with it.</p>
<ul>${disclosure.points.map((point) => html`<li>${point}</li>`)}</ul>
<p class="muted">Disclosure version ${disclosure.version}. ${query.sync ? 'Sync is on: inboxtrail will also ask to read your mail.' : 'Sending only: inboxtrail will ask only to send mail.'}</p>
<div class="actions"><a class="button" href="/app/mailboxes/connect/continue?${next}">I understand — continue to Google</a>
<a href="/app/mailboxes">Cancel</a></div>`,
    });
  });

  /**
   * The same start as GET /api/gmail/connect: the consent URL with a signed state, and the
   * PKCE verifier in a cookie only the OAuth callback receives. A GET, because the next
   * hop is Google (a form posting to us and redirecting there would be blocked by form-action).
   */
  router.get('/mailboxes/connect/continue', async (req, res) => {
    const query = parseInput(continueQuery, req.query, '(query)');
    // A disclosure the person did not see (an old link, a guessed URL, a link on another site or
    // typed in) is shown again first: the mailbox records that its owner read this version. The
    // step is a GET, so without the Fetch Metadata check (fetch-site.ts) another site's link with the
    // current version in its query took the person straight to Google's consent, past it (P-05).
    if (!cameFromOurPage(req) || query.acknowledge !== (await ctx.services.policyVersions.currentDisclosure()).version) {
      res.redirect(303, `/app/mailboxes/connect?${new URLSearchParams({ sync: String(query.sync), ...(query.loginHint ? { loginHint: query.loginHint } : {}) })}`);
      return;
    }
    const start = await mailboxes.startConnection(signedIn(req), { sync: query.sync, loginHint: query.loginHint });
    setConnectCookie(res, start, ctx.secureCookies);
    res.redirect(303, start.url);
  });

  router.post('/mailboxes/:id/disconnect', async (req, res) => {
    await mailboxes.disconnect(signedIn(req), parseId(req.params.id, 'Mailbox'));
    res.redirect(303, '/app/mailboxes?notice=disconnected');
  });

  return router;
}
