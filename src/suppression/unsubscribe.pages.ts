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

/** What a confirmation would turn back on, in the words of each page (`tracking`: allowing opens and clicks to be seen again). */
function askedText(view: RecipientView, what: { everything: boolean; topics: string[]; tracking: boolean }) {
  const undone = undoneText(view.workspaceName, what);
  const track = `${view.workspaceName} see when you open its email and click its links`;
  const join = (...parts: string[]) => parts.filter(Boolean).join(', and ');
  return {
    undone,
    /** "To …, please confirm" */
    wanted: join(undone && `receive ${undone} again`, what.tracking ? `let ${track} again` : ''),
    /** What stays as it is until the link's button is pressed. */
    stays: join(undone && 'you stay unsubscribed', what.tracking ? 'your opens and clicks stay untracked' : ''),
    staysFrom: join(undone && `you stay unsubscribed from ${undone}`, what.tracking ? 'your opens and clicks stay untracked' : ''),
    question: undone
      ? join(`Turn back on ${undone} to ${view.maskedEmail}`, what.tracking ? `let ${track} again` : '')
      : `Let ${view.workspaceName} see again when ${view.maskedEmail} opens its email and clicks its links`,
    done: join(undone && `${undone} to ${view.maskedEmail} is turned back on`, what.tracking ? `${view.workspaceName} may see again when you open its email and click its links` : ''),
  };
}

/**
 * What a saved preference form says (role="status"): what was saved, and, when it asked to undo
 * an opt-out or to allow tracking again, that the address has to confirm it first — it is never
 * applied by the form itself.
 */
export function preferencesNotice(view: RecipientView & { changed: number; resubscribe?: ResubscribeRequest }): string {
  const request = view.resubscribe;
  if (!request) return view.changed > 0 ? 'Your choices are saved.' : 'Nothing needed to change.';
  const saved = view.changed > 0 ? 'Your other choices are saved. ' : '';
  const asked = askedText(view, request);
  if (request.outcome === 'mailed') {
    return `${saved}To ${asked.wanted}, please confirm: we sent a link to ${view.maskedEmail}. It works for 24 hours, and until it is used ${asked.stays}.`;
  }
  if (request.outcome === 'recently_mailed') {
    return `${saved}We already sent links to confirm this to ${view.maskedEmail} today and send no more for now: please use the link in one of those mails. Until then ${asked.stays}.`;
  }
  return `${saved}The mail to confirm this could not be sent just now, so ${asked.staysFrom}. Please try again in a few minutes.`;
}

/** The page of the mailed link (GET): what its one button turns back on. It changes nothing by itself. */
export function resubscribeQuestionPage(view: ResubscribeView, token: string): string {
  const back = html`<p class="muted"><a href="/p/${view.preferencesToken}">Manage your email preferences</a></p>`;
  const asked = askedText(view, view);
  if (!asked.undone && !view.tracking) {
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
  const [title, heading, button] = !asked.undone
    ? [`Allow ${view.workspaceName} to track opens and clicks again?`, 'Allow tracking again?', 'Yes, allow tracking again']
    : [`Receive email from ${view.workspaceName} again?`, 'Receive email again?', view.tracking ? 'Yes, turn these back on' : 'Yes, send me this email again'];
  return renderPage(
    title,
    html`<h1>${heading}</h1>
<p>${asked.question}?</p>
<form method="post" action="/p/confirm/${token}">
<input type="hidden" name="confirm" value="yes">
<div class="actions"><button type="submit">${button}</button></div>
</form>
<p class="muted">Not you, or changed your mind? Leave this page: nothing changes, and ${asked.stays}.</p>
${back}`,
  );
}

/** After the mailed link's button (POST): what was turned back on, announced (role="status"). */
export function resubscribedPage(view: ResubscribeView & { changed: number }): string {
  const back = html`<p class="muted"><a href="/p/${view.preferencesToken}">Manage your email preferences</a></p>`;
  if (view.changed === 0) {
    return renderPage(
      'Nothing needed to change',
      html`<h1>Nothing to confirm</h1>
<p role="status">Nothing needed to change: this link was used already, or these choices changed since.</p>
${back}`,
    );
  }
  const asked = askedText(view, view);
  const done = `Confirmed: ${asked.done}.`;
  return renderPage(
    `${done} Email preferences`,
    html`<h1>${asked.undone ? 'You will receive email again' : 'Tracking is allowed again'}</h1>
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
