import { describe, expect, it } from 'vitest';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { WebClient } from '../helpers/web-client.js';

/*
 * The campaign editor follows the rule of the save it posts to (campaigns.service `update`): a
 * member may change only a draft of their own mailbox's campaign. `/app/campaigns/:id/edit` once
 * rendered the editor to a member for a teammate's draft (the campaign page hid the link, the
 * address did not), and its Save was then a 403: work typed into a form that could never save.
 */

const ctx = useAppWithOwner();

async function signedInMember() {
  const { app, owner } = ctx;
  const email = `member-${Date.now()}@example.com`;
  const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role: 'member' } });
  const joined = await acceptInvitation(app, { token: invite.body.token, password: 'a-long-member-password' });
  expect(joined.status).toBe(201);
  const browser = new WebClient(app);
  await browser.get('/signin');
  const signedIn = await browser.post('/signin', { email, password: 'a-long-member-password' });
  expect(signedIn.status).toBe(303);
  return { browser, token: joined.body.token as string };
}

async function draftOf(token: string, mailboxId: string, name: string) {
  const { app } = ctx;
  const contact = await app.api('POST', '/api/contacts', { token, json: { email: `${name.replace(/\W/g, '-')}-${Date.now()}@contoso.test` } });
  const draft = await app.api('POST', '/api/campaigns', { token, json: { name, kind: 'transactional', mailboxId, subject: 'Hi', text: 'x', contactIds: [contact.body.id] } });
  expect(draft.status, draft.text).toBe(201);
  return draft.body.id as string;
}

describe('the campaign editor of a member', () => {
  it("a teammate's draft: no editor, the campaign page with why (403 forbidden, as its save); their own draft: the editor", async () => {
    const { app, owner } = ctx;
    const ownerBox = await connectedMailbox(app, owner.token, 'owner-edit@acme.test');
    const teammatesDraft = await draftOf(owner.token, ownerBox.id, 'Owner draft');
    const audience = (await app.api('GET', `/api/campaigns/${teammatesDraft}`, { token: owner.token })).body.audience.contactIds as string[];
    const member = await signedInMember();
    const memberBox = await connectedMailbox(app, member.token, 'member-edit@acme.test');
    const ownDraft = await draftOf(member.token, memberBox.id, 'Member draft');

    const refused = await member.browser.get(`/app/campaigns/${teammatesDraft}/edit`);
    expect(refused.status).toBe(403);
    expect(refused.text).not.toContain('name="subject"');
    expect(refused.text).not.toContain(`action="/app/campaigns/${teammatesDraft}"`);
    expect(refused.text).toContain('Campaigns send from your own mailbox');
    expect(refused.text).toContain("sends from a teammate's mailbox");
    expect(refused.text).toContain('Owner draft');
    // The API refuses the same member the same save.
    const patch = await app.api('PATCH', `/api/campaigns/${teammatesDraft}`, {
      token: member.token,
      json: { name: 'Mine now', kind: 'transactional', mailboxId: ownerBox.id, subject: 'Hi', text: 'x', contactIds: audience },
    });
    expect([patch.status, patch.body.error.code]).toEqual([403, 'forbidden']);

    const own = await member.browser.get(`/app/campaigns/${ownDraft}/edit`);
    expect(own.status).toBe(200);
    expect(own.text).toContain('name="subject"');
    // "Send from" offers the member only what a save takes: their own mailbox.
    expect(own.text).toContain('member-edit@acme.test');
    expect(own.text).not.toContain('owner-edit@acme.test');
    const fresh = await member.browser.get('/app/campaigns/new');
    expect(fresh.text).not.toContain('owner-edit@acme.test');

    // An owner still edits any draft, and picks from every mailbox.
    const asOwner = await (async () => {
      const browser = new WebClient(app);
      await browser.get('/signin');
      await browser.post('/signin', { email: owner.email, password: owner.password });
      return browser.get(`/app/campaigns/${ownDraft}/edit`);
    })();
    expect(asOwner.status).toBe(200);
    expect(asOwner.text).toContain('owner-edit@acme.test');
    expect(asOwner.text).toContain('member-edit@acme.test');
  }, 60_000);

  it('a campaign past its draft: no editor for anyone (409 campaign_not_editable, as its save)', async () => {
    const { app, owner } = ctx;
    const box = await connectedMailbox(app, owner.token, 'owner-cancelled@acme.test');
    const id = await draftOf(owner.token, box.id, 'Cancelled draft');
    expect((await app.api('POST', `/api/campaigns/${id}/cancel`, { token: owner.token })).status).toBe(200);
    const browser = new WebClient(app);
    await browser.get('/signin');
    await browser.post('/signin', { email: owner.email, password: owner.password });
    const page = await browser.get(`/app/campaigns/${id}/edit`);
    expect(page.status).toBe(409);
    expect(page.text).toContain('Only a draft can be edited');
    expect(page.text).not.toContain('name="subject"');
  }, 60_000);
});
