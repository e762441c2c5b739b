import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { campaigns, suppressions } from '../../src/db/schema.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createSuppressionRepo } from '../../src/suppression/suppression.repo.js';
import { FORM, useOptOutApp } from '../helpers/opt-out.js';
import { snapshotCounts } from '../helpers/test-db.js';

/*
 * The recipient's preference center (P-09, P-11): topics with this address's state, a topic
 * opt-out and its undoing, everything off and on again, entries the recipient did not make,
 * and forms that name what does not exist. An undo is confirmed by the mailed link (here as a
 * step; its own cases in opt-out-resubscribe.test.ts). One-click and the unsubscribe page:
 * opt-out-one-click.test.ts.
 */

const ctx = useOptOutApp();
const { db, urls, seedCampaign, seedRecipient, seedMailedAddress, oneClick, entriesOf, auditOf, consentsOf, confirmationPath, confirm } = ctx;


describe('preference center (P-09, P-11)', () => {
  const save = (path: string, fields: [string, string][]) =>
    ctx.app.api('POST', path, { body: new URLSearchParams(fields).toString(), headers: FORM });

  it('shows the workspace\'s topics with this address\'s state, and GET changes nothing', async () => {
    await seedCampaign(ctx.owner.workspaceId, 'Product news');
    await seedCampaign(ctx.owner.workspaceId, null);
    const mailed = await seedMailedAddress('prefs.view@example.test');
    const before = await snapshotCounts(db());
    const page = await ctx.app.api('GET', mailed.prefs);
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.text).toContain('p•••@example.test');
    expect(page.text).not.toContain('prefs.view');
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="newsletter" checked>');
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="Product news" checked>');
    expect(page.text).toContain('value="unsubscribe-all"');
    expect(page.text).not.toContain('<script');
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('P-11 a topic opt-out suppresses only that topic, and the recipient can undo it there', async () => {
    const mailed = await seedMailedAddress('topics@example.test');
    const repo = createSuppressionRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey));
    const res = await save(mailed.prefs, [
      ['topics', 'newsletter'],
      ['topics', 'Product news'],
      ['subscribed', 'Product news'],
      ['action', 'save'],
    ]);
    expect(res.status).toBe(200);
    expect(res.text).toContain('Your choices are saved');
    expect(res.text).toContain('<input type="checkbox" name="subscribed" value="newsletter">');
    expect(await entriesOf(ctx.owner.workspaceId, 'topics@example.test')).toMatchObject([{ scope: 'topic:newsletter', reason: 'unsubscribe', source: 'preference-center' }]);
    const email = ['topics@example.test'];
    expect(await repo.findSuppressed(ctx.owner.workspaceId, email, 'newsletter')).toEqual(new Set(email));
    expect(await repo.findSuppressed(ctx.owner.workspaceId, email, 'Product news')).toEqual(new Set());
    expect(await repo.findSuppressed(ctx.owner.workspaceId, email)).toEqual(new Set());
    // A topic choice is not a withdrawal of consent as a whole.
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in']);

    const undo = await save(mailed.prefs, [
      ['topics', 'newsletter'],
      ['topics', 'Product news'],
      ['subscribed', 'newsletter'],
      ['subscribed', 'Product news'],
    ]);
    expect(undo.status).toBe(200);
    // Undone only once the address confirms it (the mailed link's button).
    expect(await entriesOf(ctx.owner.workspaceId, 'topics@example.test')).toHaveLength(1);
    expect((await confirm(confirmationPath('topics@example.test'))).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'topics@example.test')).toEqual([]);
    const audit = (await auditOf(ctx.owner.workspaceId)).filter((a) => (a.detail as { entry?: { addressHash?: string } }).entry?.addressHash === createAddressHasher(ctx.app.config.privacy.suppressionHashKey)('topics@example.test'));
    expect(audit).toMatchObject([{ action: 'suppression.removed', actor: `recipient:${mailed.recipientId}`, detail: { via: 'preference-center-confirmed' } }]);
  });

  it('P-11 unsubscribe from everything, then subscribe again (confirmed by the mailed link): both recorded as consent, both audited', async () => {
    const mailed = await seedMailedAddress('everything@example.test');
    const out = await save(mailed.prefs, [['action', 'unsubscribe-all']]);
    expect(out.status).toBe(200);
    expect(out.text).toContain('You are unsubscribed from all email');
    // Counted for the campaign whose mail led here, like the one-click link.
    expect(await entriesOf(ctx.owner.workspaceId, 'everything@example.test')).toMatchObject([{ scope: 'all', reason: 'unsubscribe', source: `campaign:${mailed.campaignId}` }]);

    const back = await save(mailed.prefs, [['action', 'resubscribe-all']]);
    expect(back.status).toBe(200);
    expect(back.text).toContain('please confirm: we sent a link to e•••@example.test');
    expect(await entriesOf(ctx.owner.workspaceId, 'everything@example.test')).toHaveLength(1);
    expect((await confirm(confirmationPath('everything@example.test'))).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'everything@example.test')).toEqual([]);
    expect((await consentsOf(mailed.contactId!)).map((c) => [c.status, c.source, c.actor])).toEqual([
      ['opted_in', 'signup-form', `user:${ctx.owner.userId}`],
      ['opted_out', 'preference-center', 'recipient'],
      ['opted_in', 'preference-center-confirmed', 'recipient'],
    ]);
    const actions = (await auditOf(ctx.owner.workspaceId))
      .filter((a) => a.actor === `recipient:${mailed.recipientId}`)
      .map((a) => a.action)
      .sort();
    // Both consent records are evidence too (the compliance report reads the audit log).
    expect(actions).toEqual(['consent.recorded', 'consent.recorded', 'suppression.added', 'suppression.removed']);
  });

  it("P-08 a user's complaint after the recipient's own opt-out holds it: kept, audited, and no longer the recipient's to undo", async () => {
    const mailed = await seedMailedAddress('held@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);
    const complaint = await ctx.app.api('POST', '/api/suppressions', {
      token: ctx.owner.token,
      json: { email: 'held@example.test', reason: 'complaint', note: 'abusive reply by phone' },
    });
    expect(complaint.status).toBe(200);
    // The entry stays the recipient's opt-out (the campaign's unsubscribe count, the consent evidence its removal needs), held by the complaint.
    expect(complaint.body).toMatchObject({ scope: 'all', reason: 'unsubscribe', source: `campaign:${mailed.campaignId}`, heldReason: 'complaint' });
    const audit = (await auditOf(ctx.owner.workspaceId)).filter((a) => a.subjectId === complaint.body.id && a.actor === `user:${ctx.owner.userId}`);
    expect(audit).toMatchObject([{ action: 'suppression.added', detail: { heldReason: 'complaint', note: 'abusive reply by phone' } }]);

    const page = await ctx.app.api('GET', mailed.prefs);
    expect(page.text).not.toContain('value="resubscribe-all"');
    const before = await snapshotCounts(db());
    const back = await save(mailed.prefs, [['action', 'resubscribe-all']]);
    expect(back.status).toBe(409);
    expect(await snapshotCounts(db())).toEqual(before);
    expect(await entriesOf(ctx.owner.workspaceId, 'held@example.test')).toMatchObject([{ reason: 'unsubscribe', heldReason: 'complaint' }]);
  });

  it('re-subscribing is refused for entries the recipient did not make (bounce, complaint): nothing changes', async () => {
    const mailed = await seedMailedAddress('bounced@example.test');
    await db().insert(suppressions).values({ workspaceId: ctx.owner.workspaceId, email: 'bounced@example.test', reason: 'bounce', source: 'dsn' });
    const complaint = await ctx.app.api('POST', '/api/suppressions', {
      token: ctx.owner.token,
      json: { email: 'bounced@example.test', reason: 'complaint', scope: 'topic:newsletter' },
    });
    expect(complaint.status).toBe(201);

    const page = await ctx.app.api('GET', mailed.prefs);
    expect(page.text).toContain('could not be delivered');
    expect(page.text).not.toContain('value="resubscribe-all"');
    expect(page.text).toContain('value="newsletter" disabled aria-describedby="topic-0-why">');

    const before = await snapshotCounts(db());
    const again = await save(mailed.prefs, [['action', 'resubscribe-all']]);
    expect(again.status).toBe(409);
    expect(again.text).toContain('Nothing was changed');
    const topic = await save(mailed.prefs, [
      ['topics', 'newsletter'],
      ['subscribed', 'newsletter'],
    ]);
    expect(topic.status).toBe(409);
    expect(await snapshotCounts(db())).toEqual(before);
    expect(await entriesOf(ctx.owner.workspaceId, 'bounced@example.test')).toHaveLength(2);
  });

  it('a one-click opt-out after a bounce records the recipient\'s withdrawal (P-11) on the entry, without a second one', async () => {
    const mailed = await seedMailedAddress('bounced.then.out@example.test');
    await db().insert(suppressions).values({ workspaceId: ctx.owner.workspaceId, email: 'bounced.then.out@example.test', reason: 'bounce', source: 'dsn' });
    expect((await oneClick(mailed.path)).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'bounced.then.out@example.test')).toMatchObject([
      { reason: 'unsubscribe', heldReason: 'bounce', source: `campaign:${mailed.campaignId}` },
    ]);
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in', 'opted_out']);
  });

  it("P-08 a recipient's opt-out over a user's manual entry becomes theirs: counted for the campaign, held by the manual reason, removable only with consent evidence", async () => {
    const address = 'manual.then.out@example.test';
    const mailed = await seedMailedAddress(address);
    const manual = await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email: address, reason: 'manual', note: 'pause' } });
    expect(manual.status).toBe(201);
    // Their mail is stopped already, but their own wish is not recorded: both pages still offer it.
    expect((await ctx.app.api('GET', mailed.path)).text).toContain(`action="${mailed.path}"`);
    expect((await ctx.app.api('GET', mailed.prefs)).text).toContain('value="unsubscribe-all"');

    expect((await oneClick(mailed.path)).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, address)).toMatchObject([
      { id: manual.body.id, scope: 'all', reason: 'unsubscribe', heldReason: 'manual', source: `campaign:${mailed.campaignId}` },
    ]);
    const audit = (await auditOf(ctx.owner.workspaceId)).filter((a) => a.subjectId === manual.body.id && a.actor === `recipient:${mailed.recipientId}`);
    expect(audit).toMatchObject([{ action: 'suppression.added', detail: { heldReason: 'manual', via: 'unsubscribe-link' } }]);
    expect((await ctx.app.api('GET', mailed.prefs)).text).not.toContain('value="unsubscribe-all"');
    expect((await ctx.app.api('GET', mailed.path)).text).toContain('You are unsubscribed');
    // A replay changes nothing more.
    const before = await snapshotCounts(db());
    expect((await oneClick(mailed.path)).status).toBe(200);
    expect(await snapshotCounts(db())).toEqual(before);

    // Removing the entry now needs the recipient's new consent, not a note alone.
    const removal = await ctx.app.api('DELETE', `/api/suppressions/${manual.body.id}`, { token: ctx.owner.token, json: { note: 'fixed' } });
    expect(removal.status).toBe(400);
    expect(await entriesOf(ctx.owner.workspaceId, address)).toHaveLength(1);
  });

  it('P-08 a recipient opting out while an admin removes the manual entry: the opt-out is kept whichever commits first', async () => {
    for (let round = 0; round < 6; round += 1) {
      const address = `race.${round}.${Date.now()}@example.test`;
      const mailed = await seedMailedAddress(address);
      const manual = await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email: address, reason: 'manual' } });
      const [unsubscribed, removed] = await Promise.all([
        oneClick(mailed.path),
        ctx.app.api('DELETE', `/api/suppressions/${manual.body.id}`, { token: ctx.owner.token, json: { note: 'cleanup' } }),
      ]);
      expect(unsubscribed.status).toBe(200);
      // The removal either came first (204, and the opt-out made an entry of its own) or met the
      // recipient's entry (400: their opt-out needs consent evidence to remove).
      expect([204, 400]).toContain(removed.status);
      expect(await entriesOf(ctx.owner.workspaceId, address), `round ${round}: removal ${removed.status}`).toMatchObject([{ scope: 'all', reason: 'unsubscribe' }]);
    }
  });

  it("P-11 checking a topic again gives no consent: an opt-out the sender recorded stands", async () => {
    const mailed = await seedMailedAddress('phone.out@example.test');
    const phone = await ctx.app.api('POST', `/api/contacts/${mailed.contactId}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
    expect(phone.status).toBe(201);
    expect((await save(mailed.prefs, [['topics', 'newsletter'], ['action', 'save']])).status).toBe(200);
    expect((await save(mailed.prefs, [['topics', 'newsletter'], ['subscribed', 'newsletter'], ['action', 'save']])).status).toBe(200);
    expect((await confirm(confirmationPath('phone.out@example.test'))).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'phone.out@example.test')).toEqual([]);
    expect((await consentsOf(mailed.contactId!)).map((c) => [c.status, c.source])).toEqual([
      ['opted_in', 'signup-form'],
      ['opted_out', 'phone call'],
    ]);
  });

  it("a draft's topic is not shown to recipients: it is the sender's plan, nobody's mail yet", async () => {
    await seedCampaign(ctx.owner.workspaceId, 'acquisition-plan', { status: 'draft' });
    const mailed = await seedMailedAddress('draft.topics@example.test');
    const page = await ctx.app.api('GET', mailed.prefs);
    expect(page.status).toBe(200);
    expect(page.text).toContain('value="newsletter"');
    expect(page.text).not.toContain('acquisition-plan');
    const refused = await save(mailed.prefs, [['topics', 'acquisition-plan'], ['action', 'save']]);
    expect(refused.status).toBe(400);
  });

  it('a form naming unknown topics or fields → 400 page and nothing changes', async () => {
    const mailed = await seedMailedAddress('strict.prefs@example.test');
    const before = await snapshotCounts(db());
    const cases: [string, string][][] = [
      [['topics', 'No such topic']],
      [['topics', 'newsletter'], ['subscribed', 'Product news']],
      [['topics', 'newsletter'], ['extra', '1']],
      [['action', 'delete-everything']],
      [['action', 'save'], ['action', 'unsubscribe-all']],
    ];
    for (const fields of cases) {
      const res = await save(mailed.prefs, fields);
      expect(res.status, JSON.stringify(fields)).toBe(400);
      expect(res.text).toContain('Nothing was changed');
    }
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('a topic whose campaigns are all deleted stays on the page, so its opt-out can be undone', async () => {
    const campaignId = await seedCampaign(ctx.owner.workspaceId, 'Short-lived');
    const recipientId = await seedRecipient(ctx.owner.workspaceId, 'short.lived@example.test');
    const prefs = urls().preferences(recipientId, campaignId);
    await save(prefs, [['topics', 'Short-lived']]);
    await db().delete(campaigns).where(eq(campaigns.id, campaignId));
    const page = await ctx.app.api('GET', prefs);
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="Short-lived">');
    const undo = await save(prefs, [
      ['topics', 'Short-lived'],
      ['subscribed', 'Short-lived'],
    ]);
    expect(undo.status).toBe(200);
    expect((await confirm(confirmationPath('short.lived@example.test'))).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'short.lived@example.test')).toEqual([]);
  });
});
