import type { CampaignsService } from '../campaigns/campaigns.service.js';
import { html, SafeHtml } from './html.js';
import { pager } from './format.js';
import { csrfField } from './layout.js';
import { OP_LABELS, VALUELESS_OPS } from './campaign-form.js';

/*
 * Read-only views of campaigns: the list, one campaign with its progress and lifecycle
 * buttons, the preflight report, and the document shown inside the preview frame.
 */

type CampaignDetail = Awaited<ReturnType<CampaignsService['get']>>;
type CampaignPage = Awaited<ReturnType<CampaignsService['list']>>;
type Preflight = Awaited<ReturnType<CampaignsService['preflight']>>;
type Preview = Awaited<ReturnType<CampaignsService['preview']>>;

export const when = (date: Date | string | null | undefined) => (date ? `${new Date(date).toISOString().replace('T', ' ').slice(0, 16)} UTC` : '—');

/** Why a campaign waits, in words (campaigns.service.ts names the reasons). */
export const WAITING_TEXT: Record<string, string> = {
  start_time: 'waiting for its start time',
  paused_by_user: 'paused by you',
  paused: 'paused',
  mailbox_disconnected: 'the mailbox was disconnected: connect the same Gmail address again, then resume',
  mailbox_needs_reconnect: 'the mailbox needs to be reconnected',
  mailbox_syncing: 'waiting until the mailbox has been read: it was reconnected, or its last sync failed (the Mailboxes page says why); a reply stops a follow-up',
  follow_ups_need_sync: 'its follow-ups need a mailbox connected with sync (replies and bounces stop them)',
  sending_window: 'outside its sending window',
  daily_budget: "the mailbox's daily budget is used up",
  gmail_rate_limit: 'Gmail asked us to slow down',
  next_step_schedule: 'waiting for the next follow-up to be due',
};

const FINISHED = ['completed', 'cancelled'];
export const PROGRESS_STATES = ['queued', 'sending', 'sent', 'failed', 'skipped'] as const;

export function campaignList({ campaigns, nextCursor }: CampaignPage, isFirstPage: boolean): SafeHtml {
  return html`<h1>Campaigns</h1>
<div class="actions"><a class="button" href="/app/campaigns/new">New campaign</a></div>
${
  campaigns.length === 0
    ? html`<p>No campaign yet.</p>`
    : html`<table>
<thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Launched</th></tr></thead>
<tbody>${campaigns.map(
        (c) => html`<tr><td><a href="/app/campaigns/${c.id}">${c.name}</a></td><td>${c.kind}</td><td><span class="status">${c.status}</span></td><td>${when(c.createdAt)}</td><td>${when(c.launchedAt)}</td></tr>`,
      )}</tbody></table>`
}
${pager('/app/campaigns', {}, nextCursor, isFirstPage)}`;
}

/** `maySend`: the viewer may act as the campaign's sender (campaigns.service.ts maySendFrom); else only stopping mail under way is offered. */
function lifecycleButtons(campaign: CampaignDetail, csrfToken: string, maySend: boolean): SafeHtml {
  const post = (action: string, label: string, style = '') =>
    html`<form class="inline" method="post" action="/app/campaigns/${campaign.id}/${action}">${csrfField(csrfToken)}<button type="submit"${style ? html` class="${style}"` : ''}>${label}</button></form>`;
  const status = campaign.status;
  return html`<div class="actions">
${status === 'draft' && maySend ? html`<a class="button" href="/app/campaigns/${campaign.id}/edit">Edit</a>${post('preflight', 'Check before launch')}` : ''}
${status === 'sending' || status === 'scheduled' ? post('pause', 'Pause', 'secondary') : ''}
${status === 'paused' && maySend ? post('resume', 'Resume') : ''}
${FINISHED.includes(status) || (status === 'draft' && !maySend) ? '' : post('cancel', 'Cancel campaign', 'danger')}
${maySend ? '' : html`<p class="muted">This campaign sends from a teammate's mailbox: only they or an admin can change, launch, resume or delete it.</p>`}
${status === 'draft' ? '' : html`<a class="button secondary" href="/app/campaigns/${campaign.id}/results">Results</a>`}
</div>`;
}

/** The progress block; campaign-progress.js refreshes its numbers from progress.json while it sends. */
function progressBlock(campaign: CampaignDetail): SafeHtml {
  const p = campaign.progress;
  const skipped = Object.entries(p.skippedBecause);
  return html`<section class="progress" aria-labelledby="progress-heading" data-progress-url="/app/campaigns/${campaign.id}/progress.json" data-status="${campaign.status}">
<h2 id="progress-heading">Progress</h2>
<p aria-live="polite">Status: <strong data-field="status">${campaign.status}</strong><span data-field="waiting">${p.waitingFor ? ` — ${WAITING_TEXT[p.waitingFor] ?? p.waitingFor}` : ''}</span></p>
<table class="numbers"><caption class="visually-hidden">Messages by state</caption>
<thead><tr>${PROGRESS_STATES.map((s) => html`<th scope="col">${s}</th>`)}</tr></thead>
<tbody><tr>${PROGRESS_STATES.map((s) => html`<td data-count="${s}">${p[s]}</td>`)}</tr></tbody></table>
<p class="muted">Next send: <span data-field="nextSendAt">${when(p.nextSendAt)}</span></p>
${skipped.length > 0 ? html`<p class="muted">Skipped: ${skipped.map(([reason, n], i) => html`${i > 0 ? ', ' : ''}${n} ${reason.replace(/_/g, ' ')}`)}</p>` : ''}
</section>`;
}

function describeAudience(audience: CampaignDetail['audience']): string {
  if ('contactIds' in audience) return `${audience.contactIds.length} chosen contacts`;
  const segment = audience.segment as { all?: SegmentCondition[]; any?: SegmentCondition[] };
  const words = (c: SegmentCondition) =>
    `${c.field.replace(/^attributes\./, '')} ${OP_LABELS[c.op as keyof typeof OP_LABELS] ?? c.op}${VALUELESS_OPS.includes(c.op) ? '' : ` ${Array.isArray(c.value) ? c.value.join(', ') : String(c.value)}`}`;
  if (segment.all?.length === 1 && segment.all[0]!.field === 'email' && segment.all[0]!.op === 'exists' && !segment.any?.length) return 'every contact';
  const parts = [segment.all?.length ? segment.all.map(words).join(' and ') : '', segment.any?.length ? `(${segment.any.map(words).join(' or ')})` : ''].filter(Boolean);
  return `contacts where ${parts.join(' and ')}`;
}

type SegmentCondition = { field: string; op: string; value?: unknown };

export function campaignDetail(campaign: CampaignDetail, options: { csrfToken: string; mailboxEmail?: string; preflight?: SafeHtml; maySend?: boolean }): SafeHtml {
  const window = campaign.sendingWindow;
  return html`<p class="muted"><a href="/app/campaigns">Campaigns</a></p>
<h1>${campaign.name} <span class="status">${campaign.status}</span></h1>
${lifecycleButtons(campaign, options.csrfToken, options.maySend ?? true)}
${options.preflight ?? ''}
<dl class="facts">
<dt>Kind</dt><dd>${campaign.kind}${campaign.topic ? ` · topic ${campaign.topic}` : ''}</dd>
<dt>From</dt><dd>${options.mailboxEmail ?? 'no mailbox'}</dd>
<dt>Subject</dt><dd>${campaign.subject}</dd>
<dt>Audience</dt><dd>${describeAudience(campaign.audience)}</dd>
<dt>Follow-ups</dt><dd>${campaign.steps.length === 0 ? 'none' : campaign.steps.map((s, i) => `${i > 0 ? ', ' : ''}after ${s.afterDays} days`).join('')}</dd>
<dt>Start</dt><dd>${campaign.startAt ? when(campaign.startAt) : 'when launched'}</dd>
<dt>Window</dt><dd>${window ? `${window.days.map((d) => ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][d - 1]).join(' ')} ${window.startHour}:00–${window.endHour}:00 ${window.timeZone}` : 'any time'}</dd>
</dl>
${campaign.status === 'draft' ? '' : progressBlock(campaign)}
<h2>Message</h2>
<iframe class="mail" title="The message as its first recipient receives it" sandbox src="/app/campaigns/${campaign.id}/preview"></iframe>
<script src="/assets/campaign-progress.js" defer></script>`;
}

/** Preflight (P-10): who would get it and who not, and the launch button. */
export function preflightReport(campaignId: string, report: Preflight, csrfToken: string): SafeHtml {
  const rows: [string, number][] = [
    ['Eligible: will receive it', report.eligible],
    ['Suppressed: opted out, bounced or blocked', report.suppressed],
    ['Missing consent: no recorded opt-in (marketing)', report.missingConsent],
    ['Invalid address', report.invalid],
  ];
  return html`<section class="preflight" aria-labelledby="preflight-heading">
<h2 id="preflight-heading">Before launch</h2>
<table class="numbers"><caption>Of ${report.total} contacts in the audience</caption>
<tbody>${rows.map(([label, n]) => html`<tr><th scope="row">${label}</th><td data-preflight="${label.split(':')[0]!.toLowerCase().replace(/ /g, '_')}">${n}</td></tr>`)}
<tr><th scope="row">Postal address in the footer</th><td data-preflight="postal_address">${report.postalAddressMissing ? html`<strong>missing</strong> — <a href="/app/settings">set it in Settings</a>; marketing mail cannot launch without it` : 'set'}</td></tr>
</tbody></table>
${report.eligible === 0 ? html`<p class="notice error" role="alert">Nobody in this audience can receive it.</p>` : ''}
<form class="inline" method="post" action="/app/campaigns/${campaignId}/launch">${csrfField(csrfToken)}
<button type="submit"${report.postalAddressMissing ? html` disabled` : ''}>Launch to ${report.eligible} ${report.eligible === 1 ? 'contact' : 'contacts'}</button></form>
</section>`;
}

/**
 * The document inside the preview frame. It is served with the mail-frame policy (no
 * scripts, no requests out, a unique origin), so the message's own HTML can be shown as is.
 */
export function previewDocument(preview: Preview | null): string {
  if (!preview) return html`<!doctype html><html lang="en"><meta charset="utf-8"><title>Preview</title><body><p>Nothing to preview yet: add a contact.</p></body></html>`.value;
  const problems = preview.problems.length
    ? html`<p style="background:#ffebe9;border:1px solid #ff8182;padding:6px 10px;border-radius:6px">${preview.problems.map((p) => `${p.field} ${p.message}`).join('; ')}</p>`
    : '';
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview</title></head>
<body style="font:15px/1.5 system-ui,sans-serif;margin:12px;color:#1f2328">
<div style="border-bottom:1px solid #d0d7de;padding-bottom:8px;margin-bottom:12px">
<div><strong>To:</strong> ${preview.to}</div>
<div><strong>Subject:</strong> <span data-preview="subject">${preview.subject}</span></div>
</div>${problems}
<div data-preview="body">${
    // The message's own HTML is shown as markup: it is the sender's template (merge values in it are escaped) inside the sandboxed frame.
    preview.html !== undefined ? new SafeHtml(preview.html) : html`<pre style="white-space:pre-wrap;font:inherit">${preview.text}</pre>`
  }</div>
</body></html>`.value;
}

