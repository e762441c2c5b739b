import { beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * The ledger keeps the address each send was launched with. A contact whose address changes
 * before its mail goes out had that address taken off them: the mail must not go there. The
 * consent the gate checks is the contact's, so the old address — possibly someone else's now,
 * with their own opt-out — would otherwise get mail on a consent that was never its own (an
 * attacker's finding: a contact created at the old address and opted out still got the mail).
 */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = 'moves@acme.test';
let mailboxId: string;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true })).id;
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

describe('a contact whose address changed after launch', () => {
  it('P-10 P-11 its queued mail is skipped (address_changed): neither the old address, now an opted-out contact\'s, nor the new one gets it', async () => {
    const [moving, staying] = await fixtures.audience(2, { prefix: 'moving' });
    const campaignId = await fixtures.launched(mailboxId, 'Before the move', [moving!.id, staying!.id], {
      steps: [{ afterDays: 2, text: 'Again' }],
      startAt: new Date(Date.now() + 1_000).toISOString(),
    });

    const newAddress = `moved-${Date.now()}@contoso.test`;
    ctx.app.sandbox.control.createMailbox({ email: newAddress });
    const moved = await ctx.app.api('PATCH', `/api/contacts/${moving!.id}`, { token: ctx.owner.token, json: { email: newAddress } });
    expect(moved.status, moved.text).toBe(200);
    // Someone else at the old address, who says no.
    const other = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: moving!.email } });
    expect(other.status, other.text).toBe(201);
    const optOut = await ctx.app.api('POST', `/api/contacts/${other.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
    expect(optOut.status, optOut.text).toBe(201);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await ctx.app.services.sendWorker.runUntilIdle();

    const sent = fixtures.sentTo(SENDER, 'Before the move');
    expect(sent.get(moving!.email)).toBeUndefined();
    expect(sent.get(newAddress)).toBeUndefined();
    expect(sent.get(staying!.email)).toBe(1);
    const firstStep = (await fixtures.ledger(campaignId)).filter((row) => row.email === moving!.email);
    expect(firstStep.map((row) => [row.status, row.skip_reason])).toContainEqual(['skipped', 'address_changed']);
    const progress = (await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body;
    expect(JSON.stringify(progress)).toContain('address_changed');
    await ctx.app.api('POST', `/api/campaigns/${campaignId}/cancel`, { token: ctx.owner.token });
  });

  it('a change of case only is the same address: the mail goes', async () => {
    const [contact] = await fixtures.audience(1, { prefix: 'recased' });
    const campaignId = await fixtures.launched(mailboxId, 'Same person', [contact!.id], { startAt: new Date(Date.now() + 1_000).toISOString() });
    const [local, domain] = contact!.email.split('@');
    const recased = await ctx.app.api('PATCH', `/api/contacts/${contact!.id}`, { token: ctx.owner.token, json: { email: `${local!.toUpperCase()}@${domain}` } });
    expect(recased.status, recased.text).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await ctx.app.services.sendWorker.runUntilIdle();
    expect((await fixtures.ledger(campaignId)).map((row) => row.status)).toEqual(['sent']);
  });
});
