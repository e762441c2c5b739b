import { Router } from 'express';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { sendMessageBody } from '../messages/messages.routes.js';
import { MAIL_FRAME_POLICY } from './csp.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { contactName, when } from './format.js';
import { html } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

/**
 * 1:1 mail from a contact's page (the same `messages.send` as POST /api/messages: the
 * suppression gate, the budget and the at-most-once send all apply), and reading a message:
 * text as text, HTML only inside a sandboxed frame of its own.
 */
export function messagePages(ctx: WebContext): Router {
  const router = Router();
  const { contacts, mailboxes, messages, messageContent } = ctx.services;

  const composeForm = async (req: Parameters<typeof signedIn>[0], contactId: string, values: Record<string, string> = {}, error?: string) => {
    const auth = signedIn(req);
    const contact = await contacts.get(auth, contactId);
    // Only the person's own active mailboxes can send; the service refuses others anyway.
    const own = (await mailboxes.list(auth)).filter((m) => m.ownerUserId === auth.userId && m.status === 'active');
    return {
      title: `Write to ${contactName(contact)}`,
      body: html`<h1>Write to ${contactName(contact)}</h1>${errorNotice(error)}
${own.length === 0 ? html`<p>You have no active Gmail mailbox to send from. <a href="/app/mailboxes">Connect one</a> first.</p>` : html`
<form class="stack" method="post" action="/app/contacts/${contact.id}/compose">${csrfField(req.browser!.csrfToken)}
<label>From <select name="mailboxId">${own.map((m) => html`<option value="${m.id}"${values.mailboxId === m.id ? html` selected` : ''}>${m.email}</option>`)}</select></label>
<label>To <input value="${contact.email}" readonly></label>
<label>Subject <input name="subject" value="${values.subject ?? ''}" maxlength="998" required></label>
<label>Message <textarea name="text" required>${values.text ?? ''}</textarea></label>
<div class="actions"><button type="submit">Send</button><a href="/app/contacts/${contact.id}">Cancel</a></div></form>`}`,
    };
  };

  router.get('/contacts/:id/compose', async (req, res) => {
    const page = await composeForm(req, parseId(req.params.id, 'Contact'));
    await sendAppPage(ctx, req, res, { ...page, section: 'contacts' });
  });

  router.post('/contacts/:id/compose', async (req, res) => {
    const auth = signedIn(req);
    const contactId = parseId(req.params.id, 'Contact');
    const input = formInput(req);
    try {
      const contact = await contacts.get(auth, contactId);
      const mail = parseInput(sendMessageBody, { mailboxId: input.mailboxId, to: contact.email, subject: input.subject ?? '', text: input.text ?? '' });
      const { pending } = await messages.send(auth, mail);
      res.redirect(303, `/app/contacts/${contactId}?notice=${pending ? 'send_pending' : 'sent'}`);
    } catch (error) {
      const problem = formProblem(error);
      const page = await composeForm(req, contactId, input, problem.message);
      await sendAppPage(ctx, req, res, { ...page, section: 'contacts', status: problem.status });
    }
  });

  router.get('/messages/:id', async (req, res) => {
    const id = parseId(req.params.id, 'Message');
    const message = await messageContent.readMessageContent(signedIn(req), id);
    const address = (a: { name?: string; address: string }) => (a.name ? `${a.name} <${a.address}>` : a.address);
    await sendAppPage(ctx, req, res, {
      title: message.subject ?? 'Message',
      section: 'contacts',
      body: html`<h1>${message.subject || '(no subject)'}</h1>
<p class="muted">From ${message.from ? address(message.from) : '—'} to ${message.to.map(address).join(', ')}${message.cc.length ? ` (cc ${message.cc.map(address).join(', ')})` : ''} · ${when(message.date)}</p>
${message.html
  ? html`<iframe class="mail" sandbox="" referrerpolicy="no-referrer" title="The message as its sender formatted it" src="/app/messages/${id}/body"></iframe>`
  : html`<pre>${message.text ?? ''}</pre>`}`,
    });
  });

  /** The message's own HTML, for the sandboxed frame only: no scripts, no requests out, a unique origin. */
  router.get('/messages/:id/body', async (req, res) => {
    const message = await messageContent.readMessageContent(signedIn(req), parseId(req.params.id, 'Message'));
    res.set({ 'Content-Security-Policy': MAIL_FRAME_POLICY, 'X-Frame-Options': 'SAMEORIGIN', 'Cache-Control': 'no-store' });
    res.type('html').send(message.html ?? '');
  });

  return router;
}
