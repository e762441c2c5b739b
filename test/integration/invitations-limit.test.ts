import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { INVITATIONS_PER_DAY } from '../../src/auth/invitations.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A workspace makes at most INVITATIONS_PER_DAY invitations in 24 hours: accepting one for a new
 * address mails a code there, so without a limit a workspace could have us mail a list of
 * strangers. Revoking one does not give it back, and invitations made at once count one by one
 * (an attacker's two bypasses of the first version).
 */

const ctx = useAppWithOwner();
const invite = (token: string, email: string) => ctx.app.api('POST', '/api/invitations', { token, json: { email, role: 'member' } });
/** Invitations made earlier (`age` ago): what the limit counts, the audit log's member.invited rows. */
const made = (workspaceId: string, n: number, age: string) =>
  ctx.app.database.db.execute(sql`
    insert into audit_log (workspace_id, actor, action, subject_type, subject_id, at)
    select ${workspaceId}::uuid, 'user:seed', 'member.invited', 'invitation', gen_random_uuid()::text, now() - ${age}::interval
    from generate_series(1, ${n})`);
const invitationsOf = async (workspaceId: string) =>
  Number(rowsOf<{ n: number }>(await ctx.app.database.db.execute(sql`select count(*)::int as n from invitations where workspace_id = ${workspaceId}::uuid`))[0]!.n);

describe('the daily invitation limit', () => {
  it(`past ${INVITATIONS_PER_DAY} invitations in 24 hours a workspace gets 429 with Retry-After until the oldest leaves the window, and nothing is stored; other workspaces are not held`, async () => {
    await made(ctx.owner.workspaceId, INVITATIONS_PER_DAY - 1, '1 hour');
    expect((await invite(ctx.owner.token, `last-${Date.now()}@example.com`)).status).toBe(201);
    const before = await invitationsOf(ctx.owner.workspaceId);
    const refused = await invite(ctx.owner.token, `one-too-many-${Date.now()}@example.com`);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('too_many_requests');
    // The oldest was made an hour ago: free again in about 23 hours.
    expect(Math.abs(Number(refused.headers.get('retry-after')) - 23 * 3600)).toBeLessThan(120);
    expect(await invitationsOf(ctx.owner.workspaceId)).toBe(before);

    const other = await signUp(ctx.app);
    expect((await invite(other.token, `elsewhere-${Date.now()}@example.com`)).status).toBe(201);
  });

  it('a revoked invitation still counts: inviting, revoking and inviting again stops at the limit', async () => {
    const owner = await signUp(ctx.app);
    await made(owner.workspaceId, INVITATIONS_PER_DAY - 2, '1 hour');
    for (let i = 0; i < 2; i += 1) {
      const created = await invite(owner.token, `revoked-${i}-${Date.now()}@example.com`);
      expect(created.status).toBe(201);
      expect((await ctx.app.api('DELETE', `/api/invitations/${created.body.invitation.id}`, { token: owner.token })).status).toBe(204);
    }
    expect((await invite(owner.token, `after-revoking-${Date.now()}@example.com`)).status).toBe(429);
  });

  it('invitations made at once are counted one by one: no more than the limit get through', async () => {
    const owner = await signUp(ctx.app);
    await made(owner.workspaceId, INVITATIONS_PER_DAY - 3, '1 hour');
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => invite(owner.token, `parallel-${i}-${Date.now()}@example.com`)));
    expect(answers.filter((a) => a.status === 201)).toHaveLength(3);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(5);
  });

  it('invitations older than 24 hours do not count', async () => {
    const owner = await signUp(ctx.app);
    await made(owner.workspaceId, INVITATIONS_PER_DAY, '25 hours');
    expect((await invite(owner.token, `fresh-${Date.now()}@example.com`)).status).toBe(201);
  });
});
