import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';

/*
 * Campaigns send from the caller's own mailbox; an admin or owner may use any of the
 * workspace's (campaigns.service.ts assertMaySendFrom). A member must not be able to make
 * another person's mailbox send — by giving that person's draft recipients of their own,
 * launching it or resuming it — nor change, delete or (as a draft) cancel it; stopping mail
 * under way (pause, cancel) is every member's to do.
 */

const ctx = useAppWithOwner();
const OWNER_MAILBOX = 'owner-sender@acme.test';
let ownerMailbox: { id: string };
let memberToken: string;
let clientId: string;

beforeAll(async () => {
  ownerMailbox = await connectedMailbox(ctx.app, ctx.owner.token, OWNER_MAILBOX);
  const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'member@acme.test', role: 'member' } });
  clientId = (await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'client@contoso.test' } })).body.id;
  memberToken = (await acceptInvitation(ctx.app, { token: invite.body.token, password: 'member password long' })).body.token;
});

async function ownersDraft() {
  const draft = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: 'Owner notice', kind: 'transactional', mailboxId: ownerMailbox.id, subject: 'Notice', text: 'x', contactIds: [clientId] },
  });
  expect(draft.status, draft.text).toBe(201);
  return draft.body as { id: string; audience: unknown };
}

const ledgerRows = async (campaignId: string) =>
  rowsOf(await ctx.app.database.db.execute(sql`select 1 from campaign_sends where campaign_id = ${campaignId}::uuid`)).length;

describe("a member and another person's campaign", () => {
  it('cannot give its draft recipients, change, launch, cancel or delete it: 403, and nothing changes or is sent', async () => {
    const draft = await ownersDraft();
    const as = (method: string, path: string, options: Record<string, unknown> = {}) => ctx.app.api(method, path, { token: memberToken, ...options });

    const csv = 'email\nstranger-one@elsewhere.test\nstranger-two@elsewhere.test\n';
    const attempts = [
      await as('POST', `/api/campaigns/${draft.id}/recipients`, { body: csv, headers: { 'content-type': 'text/csv' } }),
      await as('PATCH', `/api/campaigns/${draft.id}`, { json: { name: 'Taken over', kind: 'transactional', mailboxId: ownerMailbox.id, subject: 'Notice', text: 'x', contactIds: [clientId] } }),
      await as('POST', `/api/campaigns/${draft.id}/launch`, { json: {} }),
      await as('DELETE', `/api/campaigns/${draft.id}`),
      // A draft sends nothing: cancelling it would only end its sender's work.
      await as('POST', `/api/campaigns/${draft.id}/cancel`),
    ];
    expect(attempts.map((r) => [r.status, r.body?.error?.code])).toEqual(Array(5).fill([403, 'forbidden']));

    const after = await ctx.app.api('GET', `/api/campaigns/${draft.id}`, { token: ctx.owner.token });
    expect(after.body).toMatchObject({ status: 'draft', name: 'Owner notice', audience: draft.audience });
    const strangers = rowsOf(await ctx.app.database.db.execute(sql`select 1 from contacts where email like 'stranger-%'`));
    expect(strangers).toEqual([]);
    expect(await ledgerRows(draft.id)).toBe(0);
  });

  it('may pause and cancel it once launched (stopping mail is always safe), but not resume it', async () => {
    const draft = await ownersDraft();
    const launched = await ctx.app.api('POST', `/api/campaigns/${draft.id}/launch`, { token: ctx.owner.token, json: { startAt: new Date(Date.now() + 3600_000).toISOString() } });
    expect(launched.body.status).toBe('scheduled');
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.id}/pause`, { token: memberToken })).body.status).toBe('paused');
    const resumed = await ctx.app.api('POST', `/api/campaigns/${draft.id}/resume`, { token: memberToken });
    expect([resumed.status, resumed.body.error?.code]).toEqual([403, 'forbidden']);
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.id}/cancel`, { token: memberToken })).body.status).toBe('cancelled');
  });

  it('launches a campaign from their own mailbox', async () => {
    const own = await connectedMailbox(ctx.app, memberToken, 'member-sender@acme.test');
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: memberToken,
      json: { name: 'Member notice', kind: 'transactional', mailboxId: own.id, subject: 'Mine', text: 'x', contactIds: [clientId] },
    });
    expect(draft.status, draft.text).toBe(201);
    const launched = await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/launch`, { token: memberToken, json: {} });
    expect(launched.status, launched.text).toBe(200);
    expect(launched.body.status).toBe('sending');
    expect(await ledgerRows(draft.body.id)).toBe(1);
  });
});
