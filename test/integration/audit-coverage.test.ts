import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';

/* What the audit log records besides content reads (issue 11): each row in the transaction of its change, with its request id. */

const ctx = useAppWithOwner();
type Row = { actor: string; action: string; subject_type: string; subject_id: string | null; detail: Record<string, unknown>; request_id: string | null };
const rows = async (action: string) =>
  ((await ctx.app.database.db.execute(sql`select actor, action, subject_type, subject_id, detail, request_id from audit_log where workspace_id = ${ctx.owner.workspaceId}::uuid and action = ${action} order by at`)) as unknown as { rows: Row[] }).rows;

describe('audit coverage', () => {
  it('P-11 a consent recorded through the API is audited with its status, source and policy version', async () => {
    const contact = (await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'dana@contoso.test' } })).body;
    const res = await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'web-form' }, headers: { 'x-request-id': 'consent-req-1' } });
    expect(res.status).toBe(201);
    expect(await rows('consent.recorded')).toEqual([
      expect.objectContaining({
        actor: `user:${ctx.owner.userId}`,
        subject_type: 'contact',
        subject_id: contact.id,
        request_id: 'consent-req-1',
        detail: { consentId: res.body.id, status: 'opted_in', source: 'web-form', policyVersion: ctx.app.config.policyVersion },
      }),
    ]);
    // Bad input records nothing.
    expect((await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'maybe', source: 'x' } })).status).toBe(400);
    expect(await rows('consent.recorded')).toHaveLength(1);
  });

  it('invitations sent, revoked and accepted are audited', async () => {
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'new.admin@acme.test', role: 'admin' } });
    const joined = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a long enough password' });
    expect(joined.status).toBe(201);
    const dropped = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'never@acme.test' } });
    expect((await ctx.app.api('DELETE', `/api/invitations/${dropped.body.invitation.id}`, { token: ctx.owner.token })).status).toBe(204);

    expect((await rows('member.invited')).slice(0, 2).map((r) => [r.subject_id, r.detail.role])).toEqual([
      [invite.body.invitation.id, 'admin'],
      [dropped.body.invitation.id, 'member'],
    ]);
    expect(await rows('member.joined')).toEqual([
      expect.objectContaining({ actor: `user:${joined.body.user.id}`, subject_id: joined.body.user.id, detail: expect.objectContaining({ role: 'admin', invitationId: invite.body.invitation.id, invitedBy: ctx.owner.userId }) }),
    ]);
    expect(await rows('invitation.revoked')).toEqual([expect.objectContaining({ subject_id: dropped.body.invitation.id, actor: `user:${ctx.owner.userId}` })]);
    // Evidence names people by id, not by address.
    expect(JSON.stringify(await rows('member.invited'))).not.toContain('@acme.test');
  });

  it('P-17 role changes and removed members are audited; nobody outranks their own role and the last owner stays', async () => {
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'rep@acme.test', role: 'member' } });
    const rep = (await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a long enough password' })).body;
    const adminInvite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'ops@acme.test', role: 'admin' } });
    const ops = (await acceptInvitation(ctx.app, { token: adminInvite.body.token, password: 'a long enough password' })).body;
    const patch = (token: string, userId: string, json: unknown) => ctx.app.api('PATCH', `/api/members/${userId}`, { token, json });

    const promoted = await patch(ctx.owner.token, rep.user.id, { role: 'admin' });
    expect(promoted.status).toBe(200);
    expect(promoted.body).toEqual({ userId: rep.user.id, role: 'admin' });
    expect((await patch(ops.token, ctx.owner.userId, { role: 'member' })).status).toBe(403);
    expect((await patch(ops.token, rep.user.id, { role: 'owner' })).status).toBe(403);
    expect((await patch(rep.token, ops.user.id, { role: 'superuser' })).status).toBe(400);
    const lastOwner = await patch(ctx.owner.token, ctx.owner.userId, { role: 'admin' });
    expect(lastOwner.status).toBe(409);
    expect(lastOwner.body.error.code).toBe('last_owner');
    expect((await ctx.app.api('DELETE', `/api/members/${ctx.owner.userId}`, { token: ctx.owner.token })).body.error.code).toBe('last_owner');

    expect((await ctx.app.api('DELETE', `/api/members/${ops.user.id}`, { token: rep.token })).status).toBe(204);
    // A removed member's token stops working at once.
    expect((await ctx.app.api('GET', '/api/me', { token: ops.token })).status).toBe(401);
    expect((await ctx.app.api('DELETE', `/api/members/${ops.user.id}`, { token: ctx.owner.token })).status).toBe(404);

    expect(await rows('member.role_changed')).toEqual([
      expect.objectContaining({ actor: `user:${ctx.owner.userId}`, subject_id: rep.user.id, detail: { from: 'member', to: 'admin' } }),
    ]);
    expect(await rows('member.removed')).toEqual([expect.objectContaining({ actor: `user:${rep.user.id}`, subject_id: ops.user.id, detail: { role: 'admin' } })]);
  });

  it('P-06 a mailbox connected and disconnected is audited with its scopes and policy version', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'audited@acme.test', { sync: true });
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token })).status).toBe(204);
    const expected = { scopes: mailbox.scopes, policyVersion: ctx.app.config.policyVersion };
    expect(await rows('mailbox.connected')).toEqual([expect.objectContaining({ subject_id: mailbox.id, detail: expect.objectContaining({ ...expected, sync: true }) })]);
    expect(await rows('mailbox.disconnected')).toEqual([expect.objectContaining({ subject_id: mailbox.id, detail: expect.objectContaining({ ...expected, revokedAtGoogle: true }) })]);
    expect(JSON.stringify(await rows('mailbox.connected'))).not.toMatch(/token/i);
  });
});
