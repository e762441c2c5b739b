import { Router } from 'express';
import { consentBody, createContactBody, listContactsQuery } from '../contacts/contacts.routes.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import type { StatsService } from '../tracking/stats.service.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { contactName, pager, when } from './format.js';
import { html } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

type CampaignMail = Awaited<ReturnType<StatsService['contactTimeline']>>[number];

const PAGE_SIZE = 50;

/** Contacts: the list with search and paging, adding one, and each contact's page with its timeline. */
export function contactPages(ctx: WebContext): Router {
  const router = Router();
  const { contacts, suppressions } = ctx.services;

  router.get('/contacts', async (req, res) => {
    const query = parseInput(listContactsQuery, { ...req.query, limit: String(PAGE_SIZE) });
    const page = await contacts.list(signedIn(req), query);
    const rows = page.contacts.map(
      (c) => html`<tr><td><a href="/app/contacts/${c.id}">${contactName(c)}</a></td><td>${c.email}</td>
<td>${c.consent ? html`<span class="status ${c.consent.status === 'opted_in' ? 'good' : 'bad'}">${c.consent.status}</span>` : html`<span class="muted">none</span>`}</td><td>${when(c.createdAt)}</td></tr>`,
    );
    await sendAppPage(ctx, req, res, {
      title: 'Contacts',
      section: 'contacts',
      body: html`<h1>Contacts</h1>
<form class="inline" method="get" action="/app/contacts" role="search"><label>Search <input type="search" name="q" value="${query.q ?? ''}"></label><button type="submit">Search</button></form>
<div class="actions"><a class="button" href="/app/contacts/import">Import a CSV file</a><a class="button secondary" href="/app/contacts/new">Add a contact</a></div>
${page.contacts.length === 0 ? html`<p>${query.q ? 'No contact matches that search.' : 'No contacts yet.'}</p>` : html`<table>
<thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Consent</th><th scope="col">Added</th></tr></thead>
<tbody>${rows}</tbody></table>`}
${pager('/app/contacts', { q: query.q }, page.nextCursor, !query.cursor)}`,
    });
  });

  const newContactForm = (token: string, values: Record<string, string> = {}, error?: string) => html`<h1>Add a contact</h1>${errorNotice(error)}
<form class="stack" method="post" action="/app/contacts">${csrfField(token)}
<label>Email <input name="email" type="email" value="${values.email ?? ''}" required></label>
<label>First name <input name="firstName" value="${values.firstName ?? ''}"></label>
<label>Last name <input name="lastName" value="${values.lastName ?? ''}"></label>
<div class="actions"><button type="submit">Add</button><a href="/app/contacts">Cancel</a></div></form>`;

  router.get('/contacts/new', async (req, res) => {
    await sendAppPage(ctx, req, res, { title: 'Add a contact', section: 'contacts', body: newContactForm(req.browser!.csrfToken) });
  });

  router.post('/contacts', async (req, res) => {
    const input = formInput(req);
    try {
      const contact = await contacts.create(signedIn(req), parseInput(createContactBody, input));
      res.redirect(303, `/app/contacts/${contact.id}?notice=saved`);
    } catch (error) {
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { title: 'Add a contact', section: 'contacts', status: problem.status, body: newContactForm(req.browser!.csrfToken, input, problem.message) });
    }
  });

  router.get('/contacts/:id', async (req, res) => {
    const auth = signedIn(req);
    const contact = await contacts.get(auth, parseId(req.params.id, 'Contact'));
    const suppressed = (await suppressions.list(auth, { limit: 20, email: contact.email })).suppressions;
    const campaignMail = contact.campaignMail as CampaignMail[];
    const token = req.browser!.csrfToken;
    const attributes = Object.entries(contact.attributes ?? {});

    const timeline = contact.timeline.map((entry) =>
      entry.type === 'consent'
        ? html`<tr><td>${when(entry.at)}</td><td>Consent</td><td><span class="status ${entry.status === 'opted_in' ? 'good' : 'bad'}">${entry.status}</span> <span class="muted">source: ${entry.source}; by ${entry.actor}</span></td></tr>`
        : html`<tr><td>${when(entry.at)}</td><td>Mail ${entry.direction === 'outbound' ? 'sent' : 'received'}</td>
<td>${entry.subject === null ? html`<span class="muted">(subject visible to the mailbox owner only)</span>` : html`<a href="/app/messages/${entry.messageId}">${entry.subject || '(no subject)'}</a>`}
<span class="muted">${entry.from} → ${entry.to.join(', ')} · ${entry.status}</span>
${entry.events.length ? html`<ul>${entry.events.map((e) => html`<li>${e.type}${'kind' in e && e.kind ? ` (${e.kind})` : ''} · ${when(e.at)}</li>`)}</ul>` : ''}</td></tr>`,
    );
    const campaignRows = campaignMail.map(
      (mail) => html`<tr><td>${when(mail.at)}</td><td>${mail.campaignName} <span class="muted">step ${mail.step + 1} · ${mail.status}</span></td>
<td>opens: ${mail.opens.human} human, ${mail.opens.machine} machine, ${mail.opens.unknown} unknown · clicks: ${mail.clicks.human} human, ${mail.clicks.machine} machine, ${mail.clicks.unknown} unknown
${mail.events.length ? html`<ul>${mail.events.map((e) => html`<li>${e.type} · <strong>${e.classification}</strong> · ${when(e.at)}${'url' in e && e.url ? html` · ${e.url}` : ''}${e.reasons.length ? html`<br><span class="muted">why: ${e.reasons.join(', ')}</span>` : ''}</li>`)}</ul>` : ''}</td></tr>`,
    );

    await sendAppPage(ctx, req, res, {
      title: contactName(contact),
      section: 'contacts',
      body: html`<h1>${contactName(contact)}</h1>
<p>${contact.email}</p>
${attributes.length ? html`<table><caption class="muted">Attributes</caption><tbody>${attributes.map(([key, value]) => html`<tr><th scope="row">${key}</th><td>${String(value)}</td></tr>`)}</tbody></table>` : ''}
<h2>Suppression</h2>
${suppressed.length ? html`<p><span class="status bad">suppressed</span> ${suppressed.map((s) => html`${s.scope} (${s.reason}, ${when(s.createdAt)}) `)} — no mail from this workspace reaches this address.</p>` : html`<p><span class="status good">not suppressed</span></p>`}
<h2>Consent</h2>
<p>${contact.consent ? html`Latest: <span class="status ${contact.consent.status === 'opted_in' ? 'good' : 'bad'}">${contact.consent.status}</span> <span class="muted">(${contact.consent.source}, ${when(contact.consent.at)}, policy ${contact.consent.policyVersion})</span>` : 'No consent recorded: marketing campaigns skip this contact.'}</p>
<form class="inline" method="post" action="/app/contacts/${contact.id}/consents">${csrfField(token)}
<label>Record <select name="status"><option value="opted_in">opted in</option><option value="opted_out">opted out</option></select></label>
<label>Source <input name="source" required placeholder="e.g. signup form, phone call"></label><button type="submit">Record consent</button></form>
<div class="actions"><a class="button" href="/app/contacts/${contact.id}/compose">Write a mail</a></div>
<h2>Timeline</h2>
${timeline.length ? html`<table><thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">Details</th></tr></thead><tbody>${timeline}</tbody></table>` : html`<p class="muted">Nothing yet.</p>`}
<h2>Campaign mail</h2>
${campaignRows.length ? html`<table><thead><tr><th scope="col">When</th><th scope="col">Campaign</th><th scope="col">Opens and clicks</th></tr></thead><tbody>${campaignRows}</tbody></table>` : html`<p class="muted">No campaign mail yet.</p>`}`,
    });
  });

  router.post('/contacts/:id/consents', async (req, res) => {
    const id = parseId(req.params.id, 'Contact');
    await contacts.recordConsent(signedIn(req), id, parseInput(consentBody, formInput(req)));
    res.redirect(303, `/app/contacts/${id}?notice=saved`);
  });

  return router;
}
