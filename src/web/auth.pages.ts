import { Router, type Request, type Response } from 'express';
import { acceptBody, clientAddress, loginBody, ownWorkspaceBody, signupBody, verifyBody } from '../auth/auth.routes.js';
import { AppError } from '../errors.js';
import { parseInput } from '../http/validate.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { html } from './html.js';
import { csrfField, renderPublicPage } from './layout.js';
import { safeNext, type WebContext } from './web.middleware.js';

/**
 * Turns an API session token (what login/verify/accept return) into a browser session and its
 * cookie, and makes this browser a known device of the person (auth/login-devices.ts): whoever
 * got here gave the account's password. The session this browser had (signed in as someone
 * else, or in another workspace) ends: its cookie is replaced here, and its row would otherwise
 * keep working for anyone holding a copy of that cookie until it expires.
 */
async function startBrowserSession(ctx: WebContext, req: Request, res: Response, apiToken: string) {
  const member = await ctx.auth.authenticate(apiToken);
  // The token's version: a password change committed after this check still ends the new session.
  const { cookieValue, expiresAt } = await ctx.webSessions.start({ ...member, sessionVersion: member.session!.version });
  await ctx.webSessions.end(ctx.cookies.session.read(req));
  ctx.cookies.session.set(res, cookieValue, expiresAt);
  ctx.cookies.device.set(res, ctx.auth.deviceTokenFor(member));
}

const field = (label: string, name: string, type: string, options: { value?: string; autocomplete?: string; required?: boolean; hint?: string } = {}) =>
  html`<label>${label}${options.hint ? html` <span class="muted">${options.hint}</span>` : ''}
<input name="${name}" type="${type}" value="${options.value ?? ''}"${options.autocomplete ? html` autocomplete="${options.autocomplete}"` : ''}${options.required === false ? '' : html` required`}></label>`;

/** Sign in, sign up (two steps: the mailed code), accept an invitation, sign out. */
export function authPages(ctx: WebContext): Router {
  const router = Router();
  const page = (req: Request, res: Response, title: string, body: ReturnType<typeof html>, status = 200) =>
    res.status(status).type('html').send(renderPublicPage(title, body, ctx.sandboxInboxUrl));

  const signinForm = (req: Request, state: { email?: string; error?: string; next?: string; info?: string }) => html`<h1>Sign in</h1>
${state.info ? html`<p class="notice" role="status">${state.info}</p>` : ''}${errorNotice(state.error)}
<form class="stack" method="post" action="/signin">${csrfField(req.browser!.csrfToken)}
${state.next ? html`<input type="hidden" name="next" value="${state.next}">` : ''}
${field('Email', 'email', 'email', { value: state.email, autocomplete: 'username' })}
${field('Password', 'password', 'password', { autocomplete: 'current-password' })}
<div class="actions"><button type="submit">Sign in</button></div></form>
<p class="muted">New here? <a href="/signup">Create an account</a>. Invited to a workspace? <a href="/invitations/accept">Accept the invitation</a>.</p>`;

  router.get('/signin', (req, res) => {
    if (req.browser!.session.state === 'active') return res.redirect(303, safeNext(req.query.next) ?? '/app');
    const info = req.query.expired ? 'Your session has expired. Please sign in again.' : req.query.signed_out ? 'You are signed out.' : undefined;
    page(req, res, 'Sign in', signinForm(req, { next: safeNext(req.query.next), info }));
  });

  router.post('/signin', async (req, res) => {
    const input = formInput(req);
    const next = safeNext(input.next);
    try {
      const credentials = { email: input.email ?? '', password: input.password ?? '', deviceToken: ctx.cookies.device.read(req) };
      const { token } = await ctx.auth.login(parseInput(loginBody, credentials), clientAddress(req));
      await startBrowserSession(ctx, req, res, token);
      res.redirect(303, next ?? '/app?notice=signed_in');
    } catch (error) {
      const problem = formProblem(error, res);
      // The right password, but no workspace left: offer one of their own (auth/own-workspace.ts).
      const noWorkspace = error instanceof AppError && error.code === 'no_workspace';
      page(req, res, 'Sign in', noWorkspace ? ownWorkspaceForm(req, { email: input.email, info: problem.message }) : signinForm(req, { email: input.email, error: problem.message, next }), problem.status);
    }
  });

  const ownWorkspaceForm = (req: Request, state: { email?: string; workspaceName?: string; info?: string; error?: string }) => html`<h1>Create a workspace</h1>
${state.info ? html`<p class="notice" role="status">${state.info}</p>` : ''}${errorNotice(state.error)}
<form class="stack" method="post" action="/signin/workspace">${csrfField(req.browser!.csrfToken)}
${field('Email', 'email', 'email', { value: state.email, autocomplete: 'username' })}
${field('Password', 'password', 'password', { autocomplete: 'current-password', hint: '(again)' })}
${field('Workspace name', 'workspaceName', 'text', { value: state.workspaceName, autocomplete: 'organization' })}
<div class="actions"><button type="submit">Create and sign in</button></div></form>
<p class="muted">In your own workspace you can also download your data or close your account (Account). Invited again? <a href="/invitations/accept">Accept the invitation</a>.</p>`;

  router.post('/signin/workspace', async (req, res) => {
    const input = formInput(req);
    try {
      const credentials = { email: input.email ?? '', password: input.password ?? '', workspaceName: input.workspaceName ?? '', deviceToken: ctx.cookies.device.read(req) };
      const { token } = await ctx.auth.createOwnWorkspace(parseInput(ownWorkspaceBody, credentials), clientAddress(req));
      await startBrowserSession(ctx, req, res, token);
      res.redirect(303, '/app?notice=welcome');
    } catch (error) {
      const problem = formProblem(error, res);
      page(req, res, 'Create a workspace', ownWorkspaceForm(req, { email: input.email, workspaceName: input.workspaceName, error: problem.message }), problem.status);
    }
  });

  const signupForm = (req: Request, state: { values?: Record<string, string>; error?: string }) => html`<h1>Create your account</h1>${errorNotice(state.error)}
<form class="stack" method="post" action="/signup">${csrfField(req.browser!.csrfToken)}
${field('Your name', 'name', 'text', { value: state.values?.name, autocomplete: 'name', required: false, hint: '(optional)' })}
${field('Email', 'email', 'email', { value: state.values?.email, autocomplete: 'email' })}
${field('Password', 'password', 'password', { autocomplete: 'new-password', hint: '(at least 10 characters)' })}
${field('Workspace name', 'workspaceName', 'text', { value: state.values?.workspaceName, autocomplete: 'organization' })}
<div class="actions"><button type="submit">Continue</button></div></form>
<p class="muted">Already have an account? <a href="/signin">Sign in</a>.</p>`;

  router.get('/signup', (req, res) => page(req, res, 'Sign up', signupForm(req, {})));

  router.post('/signup', async (req, res) => {
    const input = formInput(req);
    try {
      await ctx.auth.signup(parseInput(signupBody, input), clientAddress(req));
      res.redirect(303, '/signup/verify');
    } catch (error) {
      const problem = formProblem(error, res);
      const { password: _password, ...values } = input;
      page(req, res, 'Sign up', signupForm(req, { values, error: problem.message }), problem.status);
    }
  });

  // Joining by invitation, the password is chosen here, with the code (whoever accepted the invitation may not be its addressee).
  const verifyForm = (req: Request, state: { invited: boolean; error?: string }) => html`<h1>Check your inbox</h1>
${state.invited
    ? html`<p>We sent a mail to the invited address with the next step. If the address has no account yet, the mail holds a confirmation code: paste it here and choose your password (it works once, for 24 hours). If it already has one, the mail tells you how to join with that account's password.</p>`
    : html`<p>We sent a mail to the address you gave with a confirmation code. Paste it here to finish creating your account (it works once, for 24 hours).</p>`}${errorNotice(state.error)}
<form class="stack" method="post" action="/signup/verify">${csrfField(req.browser!.csrfToken)}
${state.invited ? html`<input type="hidden" name="invited" value="1">` : ''}
${field('Confirmation code', 'code', 'text', { autocomplete: 'one-time-code' })}
${state.invited ? html`${field('Your name', 'name', 'text', { autocomplete: 'name', required: false, hint: '(optional)' })}
${field('Choose a password', 'password', 'password', { autocomplete: 'new-password', hint: '(at least 10 characters)' })}` : ''}
<div class="actions"><button type="submit">Create my account</button></div></form>`;

  router.get('/signup/verify', (req, res) => page(req, res, 'Confirm your address', verifyForm(req, { invited: req.query.invited === '1' })));

  router.post('/signup/verify', async (req, res) => {
    const input = formInput(req);
    const invited = input.invited === '1';
    try {
      const chosen = invited ? { password: input.password ?? '', ...(input.name ? { name: input.name } : {}) } : {};
      const { token } = await ctx.auth.verifySignup(parseInput(verifyBody, { code: input.code ?? '', ...chosen }));
      await startBrowserSession(ctx, req, res, token);
      res.redirect(303, '/app/mailboxes?notice=welcome');
    } catch (error) {
      const problem = formProblem(error, res);
      page(req, res, 'Confirm your address', verifyForm(req, { invited, error: problem.status === 404 ? 'That code is not valid or has expired.' : problem.message }), problem.status);
    }
  });

  const acceptForm = (req: Request, state: { error?: string }) => html`<h1>Join a workspace</h1>
<p>Paste the invitation code you were given. If you already have an account, give its password; if not, leave it empty: we mail a code to the invited address, and you choose your name and password with it.</p>${errorNotice(state.error)}
<form class="stack" method="post" action="/invitations/accept">${csrfField(req.browser!.csrfToken)}
${field('Invitation code', 'token', 'text', { autocomplete: 'off' })}
${field('Password', 'password', 'password', { autocomplete: 'current-password', required: false, hint: '(of your account, if you have one)' })}
<div class="actions"><button type="submit">Join</button></div></form>`;

  router.get('/invitations/accept', (req, res) => page(req, res, 'Accept an invitation', acceptForm(req, {})));

  router.post('/invitations/accept', async (req, res) => {
    const input = formInput(req);
    try {
      const accepted = await ctx.auth.acceptInvitation(parseInput(acceptBody, { ...input, deviceToken: ctx.cookies.device.read(req) }), clientAddress(req));
      // No account's password proven: the mail says what next (a new address's code is typed in on
      // the same page as a signup's; an existing account is told to come back with its password).
      if (!('token' in accepted)) return res.redirect(303, '/signup/verify?invited=1');
      await startBrowserSession(ctx, req, res, accepted.token);
      res.redirect(303, '/app?notice=signed_in');
    } catch (error) {
      const problem = formProblem(error, res);
      const message = problem.status === 404 ? 'That invitation code is not valid, was already used, or has expired.' : problem.message;
      page(req, res, 'Accept an invitation', acceptForm(req, { error: message }), problem.status);
    }
  });

  router.post('/signout', async (req, res) => {
    await ctx.webSessions.end(ctx.cookies.session.read(req));
    ctx.cookies.session.clear(res);
    res.redirect(303, '/signin?signed_out=1');
  });

  return router;
}
