import { html, type SafeHtml } from '../web/html.js';
import { renderPage } from '../web/layout.js';
import type { PreferencesView, RecipientView } from './recipient-view.js';

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
