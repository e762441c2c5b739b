import { createHash, randomBytes } from 'node:crypto';
import { Router } from 'express';
import { actorOf } from '../auth/actor.js';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { sendMessageBody } from '../messages/messages.routes.js';
import type { HeldKey } from '../idempotency/idempotency.service.js';
import type { OneToOneMail } from '../messages/messages.service.js';
import { grantBody } from '../privacy/grants.routes.js';
import { MAX_GRANT_DAYS, type GrantsService } from '../privacy/grants.service.js';
import { MAIL_FRAME_POLICY } from './csp.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { contactName, when } from './format.js';
import { html } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';
import { DAY_MS } from '../time.js';

type MessageAccess = Awaited<ReturnType<GrantsService['forMessage']>>;

const grantDaysForm = z.object({ days: z.coerce.number().int().min(1).max(MAX_GRANT_DAYS) });

/** The compose form's one-time key (random, base64url), its Idempotency-Key: a double submit sends once. */
const SEND_KEY = /^[A-Za-z0-9_-]{22,64}$/;
const COMPOSE_ROUTE = 'POST /app/contacts/:id/compose';

/** What the compose form's key stands for: the contact and the mail as the API's schema reads it. */
export const composeRequestHash = (contactId: string, mail: OneToOneMail) => createHash('sha256').update(JSON.stringify([contactId, mail])).digest('hex');

/**
 * 1:1 mail from a contact's page (the same `messages.send` as POST /api/messages: the
 * suppression gate, the budget and the at-most-once send all apply), and reading a message:
 * text as text, HTML only inside a sandboxed frame of its own. A mailbox's owner lets a teammate
 * read one message here (an access grant); the teammate then reads it here on that grant.
 */
export function messagePages(ctx: WebContext): Router {
  const router = Router();
  const { contacts, mailboxes, messages, messageContent, grants, idempotency, auth: accounts } = ctx.services;

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
<input type="hidden" name="sendKey" value="${values.sendKey && SEND_KEY.test(values.sendKey) ? values.sendKey : randomBytes(16).toString('base64url')}">
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
    // The form's key, as the API's Idempotency-Key (src/idempotency): a second submit of the same
    // form (a double click, a reload after a slow answer) gets the first one's outcome, never a
    // second mail. Only a success is kept: after a refusal the corrected form sends.
    const key = input.sendKey && SEND_KEY.test(input.sendKey) ? input.sendKey : undefined;
    const scope = key ? { workspaceId: auth.workspaceId, caller: actorOf(auth), route: COMPOSE_ROUTE, key } : undefined;
    const outcome = (pending: boolean | undefined) => res.redirect(303, `/app/contacts/${contactId}?notice=${pending ? 'send_pending' : 'sent'}`);
    let held: Extract<HeldKey, { kind: 'first' }> | undefined;
    let sent: { pending: boolean } | undefined;
    try {
      const contact = await contacts.get(auth, contactId);
      const mail = parseInput(sendMessageBody, { mailboxId: input.mailboxId, to: contact.email, subject: input.subject ?? '', text: input.text ?? '' });
      if (scope) {
        // As POST /api/messages (idempotency.service.ts hold): the key holds a lease until the send's
        // claim links its message, so a resubmit after a crash before the claim takes the key over
        // and sends, and one after the claim answers that message's state (202: pending).
        const start = await idempotency.hold(scope, composeRequestHash(contactId, mail), {
          resume: (messageId) => messages.answerOfClaim(auth, messageId),
          onLeaseError: (error: unknown) => req.log.warn({ err: error }, 'idempotency lease of a web send not renewed'),
        });
        if (start.kind === 'replay') return outcome(start.status === 202 || (start.body as { pending?: boolean } | null)?.pending === true);
        held = start;
      }
      sent = { pending: (await messages.send(auth, mail, { idempotencyKey: held?.claim })).pending };
    } catch (error) {
      if (held) await held.finish(formProblem(error).status, null).catch(() => undefined);
      const problem = formProblem(error);
      const code = error instanceof AppError ? error.code : undefined;
      // A form used once already (the Back button) and changed: it gets a new key to send as new mail.
      const values = code === 'idempotency_key_reused' ? { ...input, sendKey: '' } : input;
      const message =
        code === 'idempotency_in_progress' ? "This mail is being sent already (the form was sent twice): see the contact's page in a moment."
        : code === 'idempotency_key_reused' ? 'This form was sent already, with other text. Send it again to send this as a new mail.'
        : problem.message;
      const page = await composeForm(req, contactId, values, message);
      return sendAppPage(ctx, req, res, { ...page, section: 'contacts', status: problem.status });
    }
    // Sent: the key is never freed now (a failure to record the outcome leaves it in progress,
    // refusing a resubmit, rather than letting the same form send a second mail).
    if (held) await held.finish(sent.pending ? 202 : 201, sent).catch((error: unknown) => req.log.error({ err: error }, 'idempotency record of a web send not written'));
    outcome(sent.pending);
  });

  /** The basis the signed-in person reads a message on: their own mail needs none; a teammate's, an active grant. */
  const readingBasis = (access: MessageAccess) => (access.owner ? undefined : access.grants.find((g) => g.direction === 'received' && g.status === 'active'));

  const messagePage = async (req: Parameters<typeof signedIn>[0], id: string, error?: string) => {
    const auth = signedIn(req);
    const access = await grants.forMessage(auth, id);
    const received = readingBasis(access);
    const message = await messageContent.readMessageContent(auth, id, received ? { basis: 'grant' } : {});
    const address = (a: { name?: string; address: string }) => (a.name ? `${a.name} <${a.address}>` : a.address);
    return {
      title: message.subject ?? 'Message',
      section: 'contacts' as const,
      body: html`<h1>${message.subject || '(no subject)'}</h1>
<p class="muted">From ${message.from ? address(message.from) : '—'} to ${message.to.map(address).join(', ')}${message.cc.length ? ` (cc ${message.cc.map(address).join(', ')})` : ''} · ${when(message.date)}</p>
${received ? html`<p class="notice" role="note">You read this message because its mailbox's owner let you, until ${when(received.expiresAt)}. Each read is recorded.</p>` : ''}
${message.html
  ? html`<iframe class="mail" sandbox="" referrerpolicy="no-referrer" title="The message as its sender formatted it" src="/app/messages/${id}/body${received ? '?basis=grant' : ''}"></iframe>`
  : html`<pre>${message.text ?? ''}</pre>`}
${access.owner ? await sharingSection(req, id, access, error) : ''}`,
    };
  };

  /**
   * The owner's part of the page (P-03): who else may read this one message, until when, and a
   * form to let one teammate read it — the same grants as POST /api/grants, revocable here.
   */
  const sharingSection = async (req: Parameters<typeof signedIn>[0], id: string, access: MessageAccess, error?: string) => {
    const auth = signedIn(req);
    const teammates = (await accounts.listMembers(auth)).filter((m) => m.userId !== auth.userId);
    const nameOf = (userId: string) => {
      const member = teammates.find((m) => m.userId === userId);
      return member ? member.name || member.email : 'a former member';
    };
    const given = access.grants.filter((g) => g.direction === 'given');
    return html`<section aria-labelledby="sharing"><h2 id="sharing">Teammates who may read this message</h2>
<p class="muted">Only you read your mail. You can let one teammate read this one message until a date you choose (${MAX_GRANT_DAYS} days at most) and withdraw that at any time; each of their reads is recorded.</p>
${given.length ? html`<table><thead><tr><th scope="col">Teammate</th><th scope="col">Until</th><th scope="col">Status</th><th scope="col">Reason</th><th scope="col"></th></tr></thead><tbody>
${given.map((g) => html`<tr><td>${nameOf(g.granteeUserId)}</td><td>${when(g.expiresAt)}</td><td>${g.status}</td><td>${g.reason ?? ''}</td><td>${g.status === 'active' ? html`<form method="post" action="/app/messages/${id}/grants/${g.id}/revoke">${csrfField(req.browser!.csrfToken)}<button type="submit">Withdraw</button></form>` : ''}</td></tr>`)}
</tbody></table>` : ''}
${errorNotice(error)}
${teammates.length === 0 ? html`<p>There is nobody else in this workspace yet.</p>` : html`<form class="stack" method="post" action="/app/messages/${id}/grants">${csrfField(req.browser!.csrfToken)}
<label>Teammate <select name="granteeUserId">${teammates.map((m) => html`<option value="${m.userId}">${m.name ? `${m.name} <${m.email}>` : m.email}</option>`)}</select></label>
<label>For how many days <input name="days" type="number" min="1" max="${String(MAX_GRANT_DAYS)}" value="7" required></label>
<label>Reason (optional, they see it) <input name="reason" maxlength="500"></label>
<div class="actions"><button type="submit">Let them read it</button></div></form>`}
</section>`;
  };

  router.get('/messages/:id', async (req, res) => {
    await sendAppPage(ctx, req, res, await messagePage(req, parseId(req.params.id, 'Message')));
  });

  router.post('/messages/:id/grants', async (req, res) => {
    const id = parseId(req.params.id, 'Message');
    const input = formInput(req);
    try {
      const { days } = parseInput(grantDaysForm, { days: input.days });
      const grant = parseInput(grantBody, {
        messageId: id,
        granteeUserId: input.granteeUserId ?? '',
        expiresAt: new Date(Date.now() + days * DAY_MS).toISOString(),
        ...(input.reason?.trim() ? { reason: input.reason } : {}),
      });
      await grants.grant(signedIn(req), grant);
      res.redirect(303, `/app/messages/${id}?notice=grant_created`);
    } catch (error) {
      const problem = formProblem(error);
      await sendAppPage(ctx, req, res, { ...(await messagePage(req, id, problem.message)), status: problem.status });
    }
  });

  router.post('/messages/:id/grants/:grantId/revoke', async (req, res) => {
    const id = parseId(req.params.id, 'Message');
    await grants.revoke(signedIn(req), parseId(req.params.grantId, 'Grant'));
    res.redirect(303, `/app/messages/${id}?notice=grant_revoked`);
  });

  /** The message's own HTML, for the sandboxed frame only: no scripts, no requests out, a unique origin. */
  router.get('/messages/:id/body', async (req, res) => {
    // The page names its basis in the frame's address: a teammate reads on their grant (the guard checks it, and records the read).
    const basis = req.query.basis === 'grant' ? { basis: 'grant' as const } : {};
    const message = await messageContent.readMessageContent(signedIn(req), parseId(req.params.id, 'Message'), basis);
    res.set({ 'Content-Security-Policy': MAIL_FRAME_POLICY, 'X-Frame-Options': 'SAMEORIGIN', 'Cache-Control': 'no-store' });
    res.type('html').send(message.html ?? '');
  });

  return router;
}
