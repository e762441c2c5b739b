import { Router, type Request, type Response } from 'express';
import { clientAddress, emailCodeBody, profileBody } from '../auth/auth.routes.js';
import { EMAIL_CODE_SENT_MESSAGE } from '../auth/profile.js';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../errors.js';
import { entityId, parseInput } from '../http/validate.js';
import { closeBody } from '../privacy/account-closure.routes.js';
import { streamJson } from '../privacy/privacy.routes.js';
import { formInput, formRunner, pageForms, type FormError } from './forms.js';
import { when } from './format.js';
import { html, type SafeHtml } from './html.js';
import { csrfField, renderPublicPage } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';
import { refuseCrossSiteDownload } from './fetch-site.js';

const switchWorkspaceBody = z.object({ workspaceId: entityId });

interface PageState {
  /** A 4xx of one form, shown above that form only. */
  error?: FormError<AccountForm>;
  /** Just redirected from asking for a new login address (GET ?step=email-code): say its code is on the way, if a change is pending. */
  codeSent?: boolean;
  /** The name typed into a form that was refused, so it is not lost (never a password or code). */
  name?: string;
}

type AccountForm = 'profile' | 'password' | 'email' | 'verify' | 'leave' | 'close';

/**
 * Account: what a signed-in person changes about themselves, whatever their role — name,
 * password, login address (two steps: the code mailed to the new address comes back on this
 * page), their data export (P-12), leaving the workspace and closing the account. The same
 * services and schemas as PATCH /api/me, POST /api/me/email/verify, GET /api/privacy/export,
 * DELETE /api/members/me and POST /api/privacy/delete-account; passwords and codes travel only in POST bodies and are never
 * written back into a page.
 */
export function accountPages(ctx: WebContext): Router {
  const router = Router();
  const { auth } = ctx;
  const { privacyExports, accountClosure } = ctx.services;

  const page = async (req: Request, state: PageState = {}): Promise<SafeHtml> => {
    const member = signedIn(req);
    const [{ user, workspace }, emailChangePending] = await Promise.all([auth.me(member), auth.emailChangePending(member)]);
    const token = req.browser!.csrfToken;
    const { notice: problem, action } = pageForms(state.error);
    // The code step only while a change is pending (or to say why a code was refused): a link to
    // ?step=email-code must not say a code was sent when nothing was asked for.
    const codeStep =
      emailChangePending || state.error?.form === 'verify'
        ? html`<div id="email-code">${state.codeSent && emailChangePending ? html`<p class="notice" role="status">${EMAIL_CODE_SENT_MESSAGE}</p>` : ''}${problem('verify')}
<form class="stack" method="post" action="${action('/app/account/email/verify', 'verify')}">${csrfField(token)}
<label>Confirmation code <span class="muted">(from the mail sent to the new address; it works for 24 hours)</span><input name="code" required maxlength="2000" autocomplete="one-time-code"></label>
<div class="actions"><button type="submit">Confirm the new address</button></div></form></div>`
        : '';
    return html`<h1>Account</h1>
<h2 id="profile">Profile</h2>${problem('profile')}
<form class="stack" method="post" action="${action('/app/account/profile', 'profile')}">${csrfField(token)}
<label>Name <span class="muted">(leave empty to remove it)</span><input name="name" value="${state.name ?? user.name ?? ''}" maxlength="200" autocomplete="name"></label>
<div class="actions"><button type="submit">Save name</button></div></form>
<h2 id="password">Password</h2>
<p>A new password signs you out everywhere else: other browsers and session tokens. This browser stays signed in; the workspace's API keys are not affected.</p>${problem('password')}
<form class="stack" method="post" action="${action('/app/account/password', 'password')}">${csrfField(token)}
<label>Current password <input type="password" name="currentPassword" required autocomplete="current-password"></label>
<label>New password <span class="muted">(at least 10 characters)</span><input type="password" name="newPassword" required minlength="10" maxlength="200" autocomplete="new-password"></label>
<label>New password again <input type="password" name="repeatPassword" required minlength="10" maxlength="200" autocomplete="new-password"></label>
<div class="actions"><button type="submit">Change password</button></div></form>
<h2 id="email">Login address</h2>
<p>You sign in as <strong>${user.email}</strong>. A new address changes only once you enter the code we mail to it; your current address is told when it changes.</p>
${problem('email')}
<form class="stack" method="post" action="${action('/app/account/email', 'email')}">${csrfField(token)}
<label>New login address <input type="email" name="email" required maxlength="254" autocomplete="email"></label>
<label>Current password <input type="password" name="currentPassword" required autocomplete="current-password"></label>
<div class="actions"><button type="submit">Send a confirmation code</button></div></form>
${codeStep}
<h2 id="data">Your data</h2>
<p><a class="button secondary" href="/app/account/export.json" download>Download my data</a> <span class="muted">(JSON: your account, memberships and what you did)</span></p>
<h2 id="leave">Leave ${workspace.name}</h2>
<p>You stop being a member of this workspace; your account and your other workspaces stay. The Gmail mailboxes you connected here are disconnected (a campaign sending from one pauses) and the API keys you made here stop working. Its last owner cannot leave: make someone else an owner first.</p>${problem('leave')}
<form class="stack" method="post" action="${action('/app/account/leave', 'leave')}">${csrfField(token)}
<label class="choice"><input type="checkbox" name="confirm" value="yes" required> I understand: my mailboxes here are disconnected and I need a new invitation to come back</label>
<div class="actions"><button type="submit" class="danger">Leave ${workspace.name}</button></div></form>
<h2 id="close">Close my account</h2>
<p>Your sessions end at once and your account is purged after the waiting period. A workspace where you are the only member is closed with it. A workspace you own alone that others still use is not: make one of them an owner (or remove them) first, or closing is refused.</p>${problem('close')}
<form class="stack" method="post" action="${action('/app/account/close', 'close')}">${csrfField(token)}
<label>Password <input type="password" name="password" required autocomplete="current-password"></label>
<div class="actions"><button type="submit" class="danger">Close my account</button></div></form>`;
  };

  const send = async (req: Request, res: Response, body: SafeHtml, status = 200) => sendAppPage(ctx, req, res, { title: 'Account', section: 'account', body, status });
  /** A refused form: the page again with the message above that form and the API's status. */
  const onForm = (form: AccountForm) =>
    formRunner(async (req, res, problem) => send(req, res, await page(req, { error: { form, message: problem.message }, name: form === 'profile' ? formInput(req).name : undefined }), problem.status));
  const field = (req: Request, name: string) => formInput(req)[name];

  // The code step is this page: the code is a signed token mailed to the new address, so only
  // whether a change is pending is read back (no address or code is kept, or goes in the URL).
  router.get('/account', async (req, res) => send(req, res, await page(req, { codeSent: req.query.step === 'email-code' })));

  router.post('/account/profile', async (req, res) => {
    await onForm('profile')(req, res, async () => {
      // A cleared name field means "remove it", as `null` does in the API.
      await auth.updateProfile(signedIn(req), parseInput(profileBody, { name: field(req, 'name') ?? null }), clientAddress(req));
      res.redirect(303, '/app/account?notice=saved');
    });
  });

  router.post('/account/password', async (req, res) => {
    await onForm('password')(req, res, async () => {
      const input = parseInput(profileBody, { currentPassword: field(req, 'currentPassword'), newPassword: field(req, 'newPassword') });
      // The one check of the page's own: a mistyped new password would lock the person out.
      if (field(req, 'repeatPassword') !== input.newPassword) throw new ValidationError([{ field: 'repeatPassword', message: 'does not match the new password' }]);
      const member = signedIn(req);
      const { sessionVersion } = await auth.updateProfile(member, input, clientAddress(req));
      // The change ended every session of this person, this browser's too (its cookie may have
      // been stolen with the password): it goes on with a new session, a new cookie value, at the
      // new version. The old row went in the change's transaction.
      const { cookieValue, expiresAt } = await ctx.webSessions.start({ userId: member.userId, workspaceId: member.workspaceId, sessionVersion: sessionVersion! });
      ctx.cookies.session.set(res, cookieValue, expiresAt);
      res.redirect(303, '/app/account?notice=password_changed');
    });
  });

  router.post('/account/email', async (req, res) => {
    await onForm('email')(req, res, async () => {
      const result = await auth.updateProfile(signedIn(req), parseInput(profileBody, { email: field(req, 'email'), currentPassword: field(req, 'currentPassword') }), clientAddress(req));
      if (!result.email) return res.redirect(303, '/app/account?notice=email_unchanged');
      // Post/Redirect/Get: reloading the code step must not send another code.
      res.redirect(303, '/app/account?step=email-code#email-code');
    });
  });

  router.post('/account/email/verify', async (req, res) => {
    await onForm('verify')(req, res, async () => {
      await auth.confirmEmail(signedIn(req), parseInput(emailCodeBody, { code: field(req, 'code') }).code);
      res.redirect(303, '/app/account?notice=email_changed');
    });
  });

  // Another of the person's workspaces (the switcher in the page frame): a new browser session
  // there, on the same session version, and this one ended. Not a member of it (any more): 404.
  router.post('/account/workspace', async (req, res) => {
    const member = signedIn(req);
    const { workspaceId } = parseInput(switchWorkspaceBody, { workspaceId: field(req, 'workspaceId') });
    const version = member.session!.version;
    if (!(await auth.memberContext(member.userId, workspaceId, version, 'switch'))) throw new NotFoundError('Workspace');
    const { cookieValue, expiresAt } = await ctx.webSessions.start({ userId: member.userId, workspaceId, sessionVersion: version });
    await ctx.webSessions.end(ctx.cookies.session.read(req));
    ctx.cookies.session.set(res, cookieValue, expiresAt);
    res.redirect(303, '/app?notice=workspace_switched');
  });

  // The same document as GET /api/privacy/export, as a download.
  router.get('/account/export.json', refuseCrossSiteDownload, async (req, res) => {
    await streamJson(res, 'inboxtrail-export.json', await privacyExports.exportSelf(signedIn(req)));
  });

  // Leaving ends this browser's session here (it was this workspace's); the person signs in
  // again for another of their workspaces, or to make one.
  router.post('/account/leave', async (req, res) => {
    await onForm('leave')(req, res, async () => {
      // One click must not disconnect someone's Gmail: the box is required by the browser, and here.
      if (field(req, 'confirm') !== 'yes') throw new ValidationError([{ field: 'confirm', message: 'tick the box to confirm that you leave' }]);
      const member = signedIn(req);
      const { workspace } = await auth.me(member);
      await auth.leaveWorkspace(member);
      await ctx.webSessions.end(ctx.cookies.session.read(req));
      ctx.cookies.session.clear(res);
      const body = html`<h1>You left ${workspace.name}</h1><p>You are signed out of it. Your account stays: sign in to open another of your workspaces, or to make one.</p><p><a href="/signin">Sign in page</a></p>`;
      res.status(200).type('html').send(renderPublicPage('Left the workspace', body, ctx.sandboxInboxUrl));
    });
  });

  router.post('/account/close', async (req, res) => {
    await onForm('close')(req, res, async () => {
      const password = ((req.body ?? {}) as Record<string, unknown>).password ?? '';
      const result = await accountClosure.closeOwnAccount(signedIn(req), parseInput(closeBody, { password }), clientAddress(req));
      // The closure ended every web session of this person; the browser forgets its cookie too.
      ctx.cookies.session.clear(res);
      const body = html`<h1>Your account is closed</h1><p>You are signed out. Your data is purged on ${when(new Date(result.purgeAfter))}.</p><p><a href="/signin">Sign in page</a></p>`;
      res.status(200).type('html').send(renderPublicPage('Account closed', body, ctx.sandboxInboxUrl));
    });
  });

  // Old addresses from when these lived under Settings → integrations (until 227ad60): bookmarks
  // follow with a 308. A form posted to the old closure URL (a tab open since then) closes
  // nothing and lands on the form that does, with a notice: a 308 would have the browser re-post
  // the password to /account/close, which takes the same form and token, and close the account
  // unseen from a page written before the move; an irreversible step waits for the current form.
  router.get('/settings/export.json', (_req, res) => res.redirect(308, '/app/account/export.json'));
  router.get('/settings/close-account', (_req, res) => res.redirect(308, '/app/account#close'));
  router.post('/settings/close-account', (_req, res) => res.redirect(303, '/app/account?notice=close_moved'));

  return router;
}
