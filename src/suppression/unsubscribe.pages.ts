import { html, type SafeHtml } from '../web/html.js';
import { renderPage } from '../web/layout.js';
import type { PreferencesView, RecipientView } from './recipient-view.js';
import type { ResubscribeRequest, ResubscribeView } from './resubscribe.service.js';

/*
 * The recipient's pages. No scripts, no external assets, no cookies: every button is a
 * plain form POST to the same token URL. Paths are relative, so the pages work behind any
 * PUBLIC_BASE_URL.
 */

const REASON_TEXT: Record<string, string> = {
  bounce: 'mail to this address could not be delivered',
  complaint: 'mail from this sender was reported',
  manual: 'the sender stopped it',
  unsubscribe: 'you unsubscribed',
};

const preferencesLink = (token: string) => html`<a href="/p/${token}">Manage your email preferences</a>`;

export function unsubscribeQuestionPage(view: RecipientView & { alreadySuppressed: boolean }, token: string): string {
  if (view.alreadySuppressed) {
    return renderPage(
      'Unsubscribed',
      html`<h1>You are unsubscribed</h1>
<p>${view.workspaceName} no longer sends email to ${view.maskedEmail}.</p>
<p class="muted">${preferencesLink(token)}</p>`,
    );
  }
  return renderPage(
    `Unsubscribe from ${view.workspaceName}`,
    html`<h1>Unsubscribe</h1>
<p>Stop all email from <strong>${view.workspaceName}</strong> to ${view.maskedEmail}?</p>
<form method="post" action="/u/${token}">
<input type="hidden" name="confirm" value="yes">
<div class="actions"><button type="submit">Unsubscribe</button></div>
</form>
<p class="muted">Only want less email? ${preferencesLink(token)}.</p>`,
  );
}

export function unsubscribedPage(view: RecipientView, token: string): string {
  return renderPage(
    'Unsubscribed',
    html`<h1>You are unsubscribed</h1>
<p>${view.workspaceName} will not send any more email to ${view.maskedEmail}. This has already taken effect.</p>
<p class="muted">Changed your mind, or want to choose topics instead? ${preferencesLink(token)}.</p>`,
  );
}

export function preferencesPage(view: PreferencesView, token: string, notice?: string): string {
  const everything = view.everything;
  let status: SafeHtml | undefined;
  if (everything.suppressed && everything.lockedByOthers) {
    status = html`<p><strong>${view.workspaceName} no longer sends email to this address</strong> (${REASON_TEXT[everything.reason ?? 'manual']}).
To receive email again, please contact ${view.workspaceName}.</p>`;
  } else if (everything.suppressed) {
    status = html`<p><strong>You are unsubscribed from all email from ${view.workspaceName}.</strong></p>
<div class="actions"><button type="submit" name="action" value="resubscribe-all">Subscribe me again</button></div>`;
  }

  const topics =
    view.topics.length === 0
      ? html`<p class="muted">${view.workspaceName} has no topics to choose from.</p>`
      : html`<fieldset>
<legend>Topics${everything.suppressed ? ' (these apply if you receive email again)' : ''}</legend>
${view.topics.map(
  (topic, index) => html`<input type="hidden" name="topics" value="${topic.name}">
<div class="choice"><label><input type="checkbox" name="subscribed" value="${topic.name}"${topic.subscribed ? html` checked` : ''}${
    topic.lockedByOthers ? html` disabled aria-describedby="topic-${index}-why"` : ''
  }> ${topic.name}</label>${topic.lockedByOthers ? html` <span class="muted" id="topic-${index}-why">(stopped: ${REASON_TEXT[topic.reason ?? 'manual']})</span>` : ''}</div>`,
)}
</fieldset>
<div class="actions"><button type="submit" name="action" value="save">Save my choices</button></div>`;

  // "Don't track my opens and clicks": only where there is a contact to keep the choice on.
  const tracking =
    view.tracking === undefined
      ? ''
      : html`<fieldset>
<legend>Opens and clicks</legend>
<div><label><input type="radio" name="tracking" value="allow"${view.tracking.refused ? '' : html` checked`}> ${view.workspaceName} may see when I open their email and click its links</label></div>
<div><label><input type="radio" name="tracking" value="refuse"${view.tracking.refused ? html` checked` : ''}> Don't track my opens and clicks</label></div>
</fieldset>
<div class="actions"><button type="submit" name="action" value="save">Save my choices</button></div>`;

  // After a save the title says so too: it is the first thing a screen reader reads on the new page.
  return renderPage(
    notice ? `${notice} Email preferences` : 'Email preferences',
    html`<h1>Email preferences</h1>
<p>Email from <strong>${view.workspaceName}</strong> to ${view.maskedEmail}.</p>
${notice ? html`<p class="notice" role="status"><strong>${notice}</strong></p>` : ''}
<form method="post" action="/p/${token}">
${status}
${topics}
${tracking}
${everything.own ? '' : html`<div class="actions"><button type="submit" name="action" value="unsubscribe-all">Unsubscribe from everything</button></div>`}
</form>`,
  );
}

/** "all email from X" / `the topics "a" and "b"`: what an undo would turn back on. */
function undoneText(workspaceName: string, what: { everything: boolean; topics: string[] }): string {
  const parts = what.everything ? [`all email from ${workspaceName}`] : [];
  if (what.topics.length > 0) {
    const names = what.topics.map((t) => `"${t}"`);
    const list = names.length === 1 ? names[0]! : `${names.slice(0, -1).join(', ')} and ${names.at(-1)!}`;
    parts.push(`${names.length === 1 ? 'the topic' : 'the topics'} ${list}`);
  }
  return parts.join(' and ');
}

/**
 * What a saved preference form says (role="status"): what was saved, and, when it asked to undo
 * an opt-out, that the address has to confirm it first — it is never undone by the form itself.
 */
export function preferencesNotice(view: RecipientView & { changed: number; resubscribe?: ResubscribeRequest }): string {
  const request = view.resubscribe;
  if (!request) return view.changed > 0 ? 'Your choices are saved.' : 'Nothing needed to change.';
  const saved = view.changed > 0 ? 'Your other choices are saved. ' : '';
  const what = undoneText(view.workspaceName, request);
  if (request.outcome === 'mailed') {
    return `${saved}To receive ${what} again, please confirm: we sent a link to ${view.maskedEmail}. It works for 24 hours, and until it is used you stay unsubscribed.`;
  }
  if (request.outcome === 'recently_mailed') {
    return `${saved}We already sent links to confirm this to ${view.maskedEmail} today and send no more for now: please use the link in one of those mails. Until then you stay unsubscribed.`;
  }
  return `${saved}The mail to confirm this could not be sent just now, so you stay unsubscribed from ${what}. Please try again in a few minutes.`;
}

/** The page of the mailed link (GET): what its one button turns back on. It changes nothing by itself. */
export function resubscribeQuestionPage(view: ResubscribeView, token: string): string {
  const back = html`<p class="muted"><a href="/p/${view.preferencesToken}">Manage your email preferences</a></p>`;
  if (!view.everything && view.topics.length === 0) {
    return renderPage(
      'Nothing to confirm',
      html`<h1>Nothing to confirm</h1>
<p>This link was used already, or these choices changed since. Nothing was changed.</p>
${back}`,
    );
  }
  if (view.lockedByOthers) {
    return renderPage(
      'Cannot be turned back on here',
      html`<h1>This cannot be turned back on here</h1>
<p>Mail to ${view.maskedEmail} was stopped by ${view.workspaceName} or because of a delivery problem. Please contact ${view.workspaceName}.</p>
${back}`,
    );
  }
  return renderPage(
    `Receive email from ${view.workspaceName} again?`,
    html`<h1>Receive email again?</h1>
<p>Turn back on ${undoneText(view.workspaceName, view)} to ${view.maskedEmail}?</p>
<form method="post" action="/p/confirm/${token}">
<input type="hidden" name="confirm" value="yes">
<div class="actions"><button type="submit">Yes, send me this email again</button></div>
</form>
<p class="muted">Not you, or changed your mind? Leave this page: nothing changes, and you stay unsubscribed.</p>
${back}`,
  );
}

/** After the mailed link's button (POST): what was turned back on, announced (role="status"). */
export function resubscribedPage(view: ResubscribeView & { removed: number }): string {
  const back = html`<p class="muted"><a href="/p/${view.preferencesToken}">Manage your email preferences</a></p>`;
  if (view.removed === 0) {
    return renderPage(
      'Nothing needed to change',
      html`<h1>Nothing to confirm</h1>
<p role="status">Nothing needed to change: this link was used already, or these choices changed since.</p>
${back}`,
    );
  }
  const done = `Confirmed: ${undoneText(view.workspaceName, view)} to ${view.maskedEmail} is turned back on.`;
  return renderPage(
    `${done} Email preferences`,
    html`<h1>You will receive email again</h1>
<p class="notice" role="status"><strong>${done}</strong></p>
${back}`,
  );
}

/** Errors on the recipient's pages: a plain page, never a detail about the link or the address. */
export function problemPage(status: number, message?: string): string {
  if (status === 404) {
    return renderPage('Link not valid', html`<h1>This link is not valid</h1><p>Please use the link from the most recent email you received.</p>`);
  }
  if (status >= 500) {
    return renderPage(
      'Not saved',
      html`<h1>Something went wrong</h1><p>Your request was <strong>not</strong> saved. Please try again in a moment.</p>`,
    );
  }
  return renderPage('Not saved', html`<h1>Nothing was changed</h1><p>${message ?? 'The request could not be understood.'}</p>`);
}
