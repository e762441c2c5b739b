import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { SandboxContext } from './context.js';
import type { SandboxControl } from './control.js';
import { html, page } from './html.js';
import { parseHeaders, splitHeaderAndBody } from './mime.js';
import { indexPage, mailboxPage, messagePage } from './pages.js';
import { MailStoreError } from './store.js';

/** The webmail for people: look into any sandbox mailbox, read mail as a recipient would, reply, unsubscribe. */

// Email HTML is shown in a sandboxed srcdoc iframe, which inherits this policy: no scripts
// anywhere, but remote images (tracking pixels) load exactly as in a mail client.
const PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; font-src * data:; frame-src 'self'; form-action 'self' http: https:; base-uri 'none'";

function param(req: Request, name: string): string {
  return String(req.params[name] ?? '');
}

function field(req: Request, name: string): string {
  const body = req.body as Record<string, unknown> | undefined;
  const value = body?.[name];
  return typeof value === 'string' ? value : '';
}

export function inboxRoutes(ctx: SandboxContext, control: SandboxControl): Router {
  const router = express.Router();
  router.use((_req, res, next) => {
    res.set({ 'Content-Security-Policy': PAGE_POLICY, 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' });
    next();
  });
  router.use(express.urlencoded({ extended: false, limit: '1mb' }));
  const mailboxUrl = (email: string) => `/mailboxes/${encodeURIComponent(email)}`;

  router.get('/', (_req, res) => {
    const mailboxes = ctx.store.list().map((mailbox) => {
      const messages = [...mailbox.messages.values()];
      return { mailbox, total: messages.length, unread: messages.filter((m) => m.labelIds.includes('UNREAD')).length };
    });
    res.type('html').send(indexPage(mailboxes));
  });

  router.post('/mailboxes', (req, res) => {
    const kind = field(req, 'kind');
    const mailbox = ctx.store.createMailbox({ email: field(req, 'email'), kind: kind === 'workspace' || kind === 'consumer' ? kind : undefined });
    res.redirect(303, mailboxUrl(mailbox.email));
  });

  router.get('/mailboxes/:email', (req, res) => {
    const mailbox = ctx.store.get(param(req, 'email'));
    res.type('html').send(mailboxPage(mailbox, ctx.store.messagesOf(mailbox)));
  });

  router.post('/mailboxes/:email/compose', async (req, res) => {
    const email = ctx.store.get(param(req, 'email')).email;
    const to = field(req, 'to')
      .split(/[,;]/)
      .map((a) => a.trim())
      .filter(Boolean);
    const sent = await control.sendAs(email, { to, subject: field(req, 'subject'), text: field(req, 'text') });
    res.redirect(303, `${mailboxUrl(email)}/messages/${sent.id}`);
  });

  router.get('/mailboxes/:email/messages/:id', (req, res) => {
    const mailbox = ctx.store.get(param(req, 'email'));
    const message = ctx.store.message(mailbox, param(req, 'id'));
    // Opening a message reads it, as in Gmail (a labelRemoved history record follows).
    if (message.labelIds.includes('UNREAD')) ctx.store.modifyLabels(mailbox, message.id, [], ['UNREAD']);
    res.type('html').send(messagePage(mailbox, message));
  });

  router.get('/mailboxes/:email/messages/:id/raw', (req, res) => {
    const mailbox = ctx.store.get(param(req, 'email'));
    res.type('text/plain; charset=utf-8').send(ctx.store.message(mailbox, param(req, 'id')).raw);
  });

  router.post('/mailboxes/:email/messages/:id/reply', async (req, res) => {
    const email = ctx.store.get(param(req, 'email')).email;
    const sent = await control.reply(email, param(req, 'id'), { text: field(req, 'text') });
    res.redirect(303, `${mailboxUrl(email)}/messages/${sent.id}`);
  });

  router.post('/mailboxes/:email/messages/:id/unsubscribe', async (req, res) => {
    const mailbox = ctx.store.get(param(req, 'email'));
    const message = ctx.store.message(mailbox, param(req, 'id'));
    const header = parseHeaders(splitHeaderAndBody(message.raw).headerText).find((h) => h.name.toLowerCase() === 'list-unsubscribe')?.value ?? '';
    const target = /<(https?:\/\/[^>]+)>/i.exec(header)?.[1];
    let notice: string;
    if (!target) {
      notice = 'This message has no http(s) List-Unsubscribe target.';
    } else {
      // RFC 8058: a POST with exactly this body, no cookies, no redirects followed.
      try {
        const response = await fetch(target, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'List-Unsubscribe=One-Click',
          redirect: 'manual',
          signal: AbortSignal.timeout(10_000),
        });
        notice = `One-click unsubscribe POST to ${target} answered ${response.status}.`;
      } catch (error) {
        notice = `One-click unsubscribe POST to ${target} failed: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
    res.type('html').send(messagePage(mailbox, message, notice));
  });

  router.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (!(error instanceof MailStoreError) && !(error instanceof TypeError)) return next(error);
    const status = error instanceof MailStoreError && error.code === 'not_found' ? 404 : 400;
    res.status(status).type('html').send(page('Not possible', html`<div class="card"><p>${error.message}</p><p><a href="/">All mailboxes</a></p></div>`));
  });

  return router;
}
