import { beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Marketing mail carries the sender's postal address (launch refuses marketing without one).
 * Clearing it while a marketing campaign was still to send let its next batches go out without
 * it; now the clear is refused until those campaigns end. Another address may replace it.
 */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const setAddress = (postalAddress: string | null) => ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress } });
let mailboxId: string;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, `postal-${Date.now()}@acme.test`)).id;
  expect((await setAddress('Acme Inc., 1 Main St, Springfield')).status).toBe(200);
});

describe('the postal address while marketing mail is to be sent', () => {
  it('cannot be cleared while a marketing campaign is scheduled; another address may replace it; once it is cancelled, it may be cleared', async () => {
    const contacts = await fixtures.audience(1, { prefix: 'postal' });
    const campaignId = await fixtures.launched(mailboxId, 'Later', contacts.map((c) => c.id), { startAt: new Date(Date.now() + 3_600_000).toISOString() });
    const refused = await setAddress(null);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('postal_address_in_use');
    expect((await ctx.app.api('GET', '/api/me', { token: ctx.owner.token })).body.workspace.postalAddress).toBe('Acme Inc., 1 Main St, Springfield');
    expect((await setAddress('Acme Inc., 2 High St, Springfield')).status).toBe(200);
    expect((await ctx.app.api('POST', `/api/campaigns/${campaignId}/cancel`, { token: ctx.owner.token })).status).toBe(200);
    expect((await setAddress(null)).status).toBe(200);
  });
});
