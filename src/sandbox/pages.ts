import { emailFrame, html, page } from './html.js';
import { formatAddress, parseHeaders, splitHeaderAndBody } from './mime.js';
import type { AuthorizationRequest } from './oauth.js';
import type { Mailbox, StoredMessage } from './store.js';

/** Server-rendered pages for people: the consent screen and a small webmail. */

const enc = encodeURIComponent;

export function consentPage(input: { pendingId: string; request: AuthorizationRequest; mailboxes: Mailbox[] }): string {
  const { request, mailboxes } = input;
  const suggested = request.loginHint ?? mailboxes[mailboxes.length - 1]?.email ?? '';
  return page(
    'Sign in',
    html`<div class="card">
  <h1>Sign in with the Gmail sandbox</h1>
  <p><strong>${request.clientId}</strong> wants to access a sandbox Google Account.</p>
  <p class="muted">It asks for:</p>
  <ul>${request.scopes.map((s) => html`<li><code>${s}</code></li>`)}</ul>
  <p class="muted">access_type=${request.accessType}${request.includeGrantedScopes ? ', include_granted_scopes' : ''}${request.prompt.length > 0 ? `, prompt=${request.prompt.join(' ')}` : ''}; you will return to <code>${request.redirectUri}</code></p>
  <form method="post" action="/o/oauth2/v2/auth/decision">
    <input type="hidden" name="request" value="${input.pendingId}">
    <label for="email">Approve as mailbox (a new address creates that mailbox)</label>
    <input id="email" name="email" type="email" required size="40" list="mailboxes" value="${suggested}">
    <datalist id="mailboxes">${mailboxes.map((m) => html`<option value="${m.email}">${m.kind}</option>`)}</datalist>
    <label for="kind">Kind, for a new mailbox</label>
    <select id="kind" name="kind"><option value="">from the domain (gmail.com = consumer)</option><option value="workspace">workspace</option><option value="consumer">consumer</option></select>
    <p>
      <button class="primary" type="submit" name="decision" value="allow">Allow</button>
      <button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
    </p>
  </form>
</div>`,
  );
}

export function oauthErrorPage(error: string, description: string): string {
  return page(
    'Access blocked',
    html`<div class="card"><h1>Access blocked: this request is invalid</h1><p><strong>Error 400: ${error}</strong></p><p>${description}</p></div>`,
  );
}

function labels(message: StoredMessage) {
  return message.labelIds.map((l) => html`<span class="label">${l}</span>`);
}

export function indexPage(mailboxes: { mailbox: Mailbox; total: number; unread: number }[]): string {
  return page(
    'Mailboxes',
    html`<div class="card">
  <h1>Mailboxes</h1>
  ${
    mailboxes.length === 0
      ? html`<p class="muted">No mailboxes yet. Connecting Gmail through the sandbox creates one, or add one here.</p>`
      : html`<table><thead><tr><th>Mailbox</th><th>Kind</th><th>Messages</th><th>Unread</th><th>historyId</th></tr></thead><tbody>
    ${mailboxes.map(
      ({ mailbox, total, unread }) =>
        html`<tr><td><a href="/mailboxes/${enc(mailbox.email)}">${mailbox.email}</a></td><td>${mailbox.kind}</td><td>${total}</td><td>${unread}</td><td>${mailbox.historyId}</td></tr>`,
    )}
  </tbody></table>`
  }
</div>
<div class="card">
  <h2>Add a mailbox</h2>
  <form method="post" action="/mailboxes">
    <input name="email" type="email" required placeholder="someone@example.com" size="36">
    <select name="kind"><option value="">kind from the domain</option><option value="workspace">workspace</option><option value="consumer">consumer</option></select>
    <button type="submit">Add</button>
  </form>
</div>`,
  );
}

export function mailboxPage(mailbox: Mailbox, messages: StoredMessage[]): string {
  const base = `/mailboxes/${enc(mailbox.email)}`;
  return page(
    mailbox.email,
    html`<div class="card">
  <h1>${mailbox.email}</h1>
  <p class="muted">${mailbox.kind} · historyId ${mailbox.historyId} · ${messages.length} messages${mailbox.watch ? html` · watched on <code>${mailbox.watch.topicName}</code>` : ''}</p>
  ${
    messages.length === 0
      ? html`<p class="muted">No mail yet.</p>`
      : html`<table><thead><tr><th>From</th><th>To</th><th>Subject</th><th>Labels</th><th>Date</th></tr></thead><tbody>
    ${messages.map(
      (m) => html`<tr class="${m.labelIds.includes('UNREAD') ? 'unread' : ''}">
      <td>${m.summary.from.map(formatAddress).join(', ')}</td>
      <td>${m.summary.to.map((a) => a.address).join(', ')}</td>
      <td><a href="${base}/messages/${m.id}">${m.summary.subject || '(no subject)'}</a><div class="muted">${decodeSnippet(m.snippet)}</div></td>
      <td>${labels(m)}</td>
      <td class="muted">${new Date(m.internalDate).toISOString().replace('T', ' ').slice(0, 19)}</td>
    </tr>`,
    )}
  </tbody></table>`
  }
</div>
<div class="card">
  <h2>Write from this mailbox</h2>
  <p class="muted">Sends as ${mailbox.email}, the way messages.send would: a SENT copy here, an INBOX copy in every sandbox recipient.</p>
  <form method="post" action="${base}/compose">
    <label>To <input name="to" type="text" required size="50"></label>
    <label>Subject <input name="subject" type="text" size="50"></label>
    <label>Text</label><textarea name="text" rows="5" cols="70"></textarea>
    <p><button class="primary" type="submit">Send</button></p>
  </form>
</div>`,
  );
}

/** Snippets are stored HTML-escaped (as Gmail returns them); undo that before escaping once for the page. */
function decodeSnippet(snippet: string): string {
  return snippet.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&gt;/g, '>').replace(/&lt;/g, '<').replace(/&amp;/g, '&');
}

export function messagePage(mailbox: Mailbox, message: StoredMessage, notice?: string): string {
  const base = `/mailboxes/${enc(mailbox.email)}/messages/${message.id}`;
  const headers = parseHeaders(splitHeaderAndBody(message.raw).headerText);
  const listUnsubscribe = headers.find((h) => h.name.toLowerCase() === 'list-unsubscribe')?.value;
  const oneClick = headers.some((h) => h.name.toLowerCase() === 'list-unsubscribe-post' && /List-Unsubscribe=One-Click/i.test(h.value));
  const httpsTarget = listUnsubscribe ? /<(https?:\/\/[^>]+)>/i.exec(listUnsubscribe)?.[1] : undefined;
  return page(
    message.summary.subject || '(no subject)',
    html`<p><a href="/mailboxes/${enc(mailbox.email)}">← ${mailbox.email}</a></p>
${notice ? html`<div class="card"><strong>${notice}</strong></div>` : ''}
<div class="card">
  <h1>${message.summary.subject || '(no subject)'}</h1>
  <p>${labels(message)}</p>
  <p class="muted">id ${message.id} · thread ${message.threadId} · historyId ${message.historyId} · ${message.raw.length} bytes · <a href="${base}/raw">raw</a></p>
  ${
    httpsTarget && oneClick
      ? html`<form method="post" action="${base}/unsubscribe"><button type="submit">Unsubscribe (one-click, as Gmail does)</button> <span class="muted">POSTs List-Unsubscribe=One-Click to ${httpsTarget}</span></form>`
      : ''
  }
  <details><summary>Headers (${headers.length})</summary>
    <table>${headers.map((h) => html`<tr><th>${h.name}</th><td>${h.value}</td></tr>`)}</table>
  </details>
</div>
${message.summary.html ? html`<div class="card"><h2>HTML</h2>${emailFrame(message.summary.html)}</div>` : ''}
<div class="card"><h2>Text</h2><pre>${message.summary.text || '(no text part)'}</pre></div>
<div class="card">
  <h2>Reply as ${mailbox.email}</h2>
  <form method="post" action="${base}/reply">
    <textarea name="text" rows="5" cols="70" required></textarea>
    <p><button class="primary" type="submit">Send reply</button></p>
  </form>
</div>`,
  );
}
