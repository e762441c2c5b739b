import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A revoked API key stops at once, also in a request it started before: a CSV import writes its
 * file in batches for as long as the file lasts (up to 100,000 rows), and once carried on to the
 * last row with a key revoked in its first seconds — the leaked key an owner had just revoked
 * went on writing contacts and consents. Now each batch checks the caller first: after the
 * revocation's answer, at most the batch being written lands. The same for a person removed
 * from the workspace while their import runs.
 */

const ctx = useAppWithOwner();
const ROWS = 10_000;
const BATCH = 200;

const countContacts = async (workspaceId: string) =>
  Number(rowsOf<{ n: number }>(await ctx.app.database.db.execute(sql`select count(*)::int as n from contacts where workspace_id = ${workspaceId}::uuid`))[0]!.n);

/** Starts an import of ROWS new addresses as `token`; once its first batch is written, `revoke` runs; then the import's answer and the counts. */
async function importThenRevoke(token: string, prefix: string, revoke: () => Promise<void>) {
  const { app, owner } = ctx;
  const before = await countContacts(owner.workspaceId);
  const lines = ['email,consent'];
  for (let i = 0; i < ROWS; i += 1) lines.push(`${prefix}${i}@example.com,opted_in`);
  const importing = app.api('POST', '/api/contacts/import', { token, body: `${lines.join('\n')}\n`, headers: { 'content-type': 'text/csv' } });
  const deadline = Date.now() + 60_000;
  while ((await countContacts(owner.workspaceId)) === before) {
    if (Date.now() > deadline) throw new Error('the import never started writing');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await revoke();
  const atRevocation = (await countContacts(owner.workspaceId)) - before;
  const answer = await importing;
  return { answer, atRevocation, written: (await countContacts(owner.workspaceId)) - before };
}

describe('a caller revoked during its import', () => {
  it('an API key: the import stops within one batch and answers 401 api_key_revoked', async () => {
    const { app, owner } = ctx;
    const created = await app.api('POST', '/api/api-keys', { token: owner.token, json: { name: 'crm', scopes: ['send'] } });
    expect(created.status).toBe(201);
    const { answer, atRevocation, written } = await importThenRevoke(created.body.key, 'key', async () => {
      expect((await app.api('DELETE', `/api/api-keys/${created.body.id}`, { token: owner.token })).status).toBe(204);
    });
    expect(atRevocation).toBeLessThan(ROWS / 2);
    expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status: 401, code: 'api_key_revoked' });
    expect(written).toBeLessThanOrEqual(atRevocation + BATCH);
    // How far it got: the report as of the last batch written (the first `rows` rows of the file).
    expect(answer.body.error.details.import).toMatchObject({ rows: written, created: written, failed: 0 });
    expect((await app.api('GET', '/api/contacts', { token: created.body.key })).status).toBe(401);
  }, 120_000);

  it('a member removed from the workspace: their import stops within one batch (401 invalid_token)', async () => {
    const { app, owner } = ctx;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: `member-${Date.now()}@example.com`, role: 'member' } });
    const member = await acceptInvitation(app, { token: invite.body.token, password: 'a-long-member-password' });
    expect(member.status).toBe(201);
    const { answer, atRevocation, written } = await importThenRevoke(member.body.token, 'member', async () => {
      expect((await app.api('DELETE', `/api/members/${member.body.user.id}`, { token: owner.token })).status).toBe(204);
    });
    expect(atRevocation).toBeLessThan(ROWS / 2);
    expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status: 401, code: 'invalid_token' });
    expect(written).toBeLessThanOrEqual(atRevocation + BATCH);
  }, 120_000);
});
