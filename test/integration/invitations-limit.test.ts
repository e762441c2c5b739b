import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { INVITATIONS_PER_DAY } from '../../src/auth/invitations.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A workspace makes at most INVITATIONS_PER_DAY invitations in 24 hours: accepting one for a new
 * address mails a code there, so without a limit a workspace could have us mail a list of strangers.
 */

const ctx = useAppWithOwner();
const invite = (token: string, email: string) => ctx.app.api('POST', '/api/invitations', { token, json: { email, role: 'member' } });
const seed = (workspaceId: string, n: number, age: string) =>
  ctx.app.database.db.execute(sql`
    insert into invitations (workspace_id, email, role, token_hash, expires_at, created_at)
    select ${workspaceId}::uuid, 'seeded-' || g || '-' || md5(random()::text) || '@example.com', 'member', md5(random()::text), now() + interval '7 days', now() - ${age}::interval
    from generate_series(1, ${n}) g`);
const count = async (workspaceId: string) =>
  Number(rowsOf<{ n: number }>(await ctx.app.database.db.execute(sql`select count(*)::int as n from invitations where workspace_id = ${workspaceId}::uuid`))[0]!.n);

describe('the daily invitation limit', () => {
  it(`past ${INVITATIONS_PER_DAY} invitations in 24 hours a workspace gets 429 with Retry-After, and nothing is stored; other workspaces are not held`, async () => {
    await seed(ctx.owner.workspaceId, INVITATIONS_PER_DAY - 1, '1 hour');
    expect((await invite(ctx.owner.token, `last-${Date.now()}@example.com`)).status).toBe(201);
    const before = await count(ctx.owner.workspaceId);
    const refused = await invite(ctx.owner.token, `one-too-many-${Date.now()}@example.com`);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('too_many_requests');
    expect(refused.headers.get('retry-after')).toBe('3600');
    expect(await count(ctx.owner.workspaceId)).toBe(before);

    const other = await signUp(ctx.app);
    expect((await invite(other.token, `elsewhere-${Date.now()}@example.com`)).status).toBe(201);
  });

  it('invitations older than 24 hours do not count', async () => {
    const owner = await signUp(ctx.app);
    await seed(owner.workspaceId, INVITATIONS_PER_DAY, '25 hours');
    expect((await invite(owner.token, `fresh-${Date.now()}@example.com`)).status).toBe(201);
  });
});
