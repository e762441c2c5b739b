import { Router, type Request } from 'express';
import { inviteBody, workspaceBody } from '../auth/auth.routes.js';
import { ForbiddenError } from '../errors.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { errorNotice, formInput, formProblem } from './forms.js';
import { when } from './format.js';
import { html, type SafeHtml } from './html.js';
import { csrfField } from './layout.js';
import { sendAppPage, signedIn, type WebContext } from './web.middleware.js';

/** Settings: the workspace's name and postal address, its members and roles, invitations. */
export function settingsPages(ctx: WebContext): Router {
  const router = Router();
  const { auth } = ctx;

  const settingsPage = async (req: Request, state: { error?: string; invited?: { email: string; token: string } } = {}): Promise<SafeHtml> => {
    const member = signedIn(req);
    const admin = member.role !== 'member';
    const token = req.browser!.csrfToken;
    const [me, members, invitations] = await Promise.all([auth.me(member), auth.listMembers(member), admin ? auth.listInvitations(member) : Promise.resolve([])]);
    const acceptUrl = `${ctx.config.publicBaseUrl}/invitations/accept`;
    return html`<h1>Settings</h1>${errorNotice(state.error)}
<p><a href="/app/settings/integrations">Integrations and privacy</a>: API keys, webhooks, compliance report. <a href="/app/account">Your account</a>: your name, password and login address, your data, closing your account.</p>
${state.invited ? html`<div class="notice" role="status"><p>Invitation for ${state.invited.email} created. Send them this code (it is shown only now, works once, for 7 days):</p>
<p><code>${state.invited.token}</code></p><p>They accept it at <a href="${acceptUrl}">${acceptUrl}</a>.</p></div>` : ''}
<h2>Workspace</h2>
${admin ? html`<form class="stack" method="post" action="/app/settings/workspace">${csrfField(token)}
<label>Name <input name="name" value="${me.workspace.name}" required maxlength="200"></label>
<label>Postal address <span class="muted">(printed in every marketing mail; required to launch one)</span><textarea name="postalAddress">${me.workspace.postalAddress ?? ''}</textarea></label>
<div class="actions"><button type="submit">Save</button></div></form>`
  : html`<p>${me.workspace.name}</p><p class="muted">Postal address: ${me.workspace.postalAddress ?? 'not set'}. Owners and admins change these.</p>`}
<h2>Members</h2>
<table><thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Since</th></tr></thead>
<tbody>${members.map((m) => html`<tr><td>${m.name ?? '—'}</td><td>${m.email}</td><td>${m.role}</td><td>${when(m.since)}</td></tr>`)}</tbody></table>
${admin ? html`<h2>Invitations</h2>
${invitations.length ? html`<table><thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Expires</th><th scope="col"><span class="muted">Actions</span></th></tr></thead><tbody>
${invitations.map((i) => html`<tr><td>${i.email}</td><td>${i.role}</td><td>${when(i.expiresAt)}</td><td><form class="inline" method="post" action="/app/settings/invitations/${i.id}/revoke">${csrfField(token)}<button type="submit" class="secondary">Revoke</button></form></td></tr>`)}
</tbody></table>` : html`<p class="muted">No pending invitations.</p>`}
<form class="stack" method="post" action="/app/settings/invitations">${csrfField(token)}
<label>Email <input type="email" name="email" required></label>
<label>Role <select name="role"><option value="member">member</option><option value="admin">admin</option>${member.role === 'owner' ? html`<option value="owner">owner</option>` : ''}</select></label>
<div class="actions"><button type="submit">Invite</button></div></form>` : ''}`;
  };

  const send = async (req: Request, res: Parameters<typeof sendAppPage>[2], body: SafeHtml, status = 200) =>
    sendAppPage(ctx, req, res, { title: 'Settings', section: 'settings', body, status });

  router.get('/settings', async (req, res) => send(req, res, await settingsPage(req)));

  router.post('/settings/workspace', async (req, res) => {
    const input = formInput(req);
    try {
      // A cleared postal address field means "remove it", as `null` does in the API.
      await auth.updateWorkspace(signedIn(req), parseInput(workspaceBody, { name: input.name ?? '', postalAddress: input.postalAddress ?? null }));
      res.redirect(303, '/app/settings?notice=saved');
    } catch (error) {
      const problem = formProblem(error);
      await send(req, res, await settingsPage(req, { error: problem.message }), problem.status);
    }
  });

  router.post('/settings/invitations', async (req, res) => {
    const member = signedIn(req);
    if (member.role === 'member') throw new ForbiddenError('Only owners and admins invite');
    try {
      const { invitation, token } = await auth.invite(member, parseInput(inviteBody, formInput(req)));
      // The code is shown on this answer only (like the API's one-time `token`), never put in a URL.
      await send(req, res, await settingsPage(req, { invited: { email: invitation.email, token } }), 201);
    } catch (error) {
      const problem = formProblem(error);
      await send(req, res, await settingsPage(req, { error: problem.message }), problem.status);
    }
  });

  router.post('/settings/invitations/:id/revoke', async (req, res) => {
    const member = signedIn(req);
    if (member.role === 'member') throw new ForbiddenError('Only owners and admins revoke invitations');
    await auth.revokeInvitation(member, parseId(req.params.id, 'Invitation'));
    res.redirect(303, '/app/settings?notice=saved');
  });

  return router;
}
