import { describe, expect, it } from 'vitest';
import { createSignedTokens } from '../../src/auth/signed-tokens.js';
import { FORM, expectNoRedirectNoCookie, useOptOutApp } from '../helpers/opt-out.js';
import { snapshotCounts } from '../helpers/test-db.js';

/*
 * Undoing a recipient's own opt-out takes a confirmation by the address itself (P-08, P-11).
 * A link from a campaign's mail proves nothing about who holds it: mail is forwarded and kept
 * for years. An attacker's finding: with an older newsletter's preference link, a cross-site
 * form post (action=resubscribe-all) deleted the person's later opt-out and recorded an opt-in
 * "by the recipient"; re-checking an opted-out topic did the same for that topic. Now the form
 * only mails the address a link; its page's button undoes exactly what it names.
 */

const ctx = useOptOutApp();
const { db, urls, seedCampaign, seedMailedAddress, oneClick, entriesOf, auditOf, consentsOf, confirmationMails, confirmationPath, confirm } = ctx;

const crossSite = { ...FORM, origin: 'https://evil.example', referer: 'https://evil.example/page' };
const post = (path: string, fields: [string, string][], headers: Record<string, string> = FORM) =>
  ctx.app.api('POST', path, { body: new URLSearchParams(fields).toString(), headers });

/** What a change would touch: the list, consent history, audit log and webhook outbox (not the mail counter). */
async function stateOf() {
  const { auth_attempts: _counter, ...rest } = await snapshotCounts(db());
  return rest;
}

describe('undoing an opt-out takes a confirmation by the address (P-08, P-11)', () => {
  it("P-08 an old forwarded newsletter's link cannot undo a later opt-out: the form only mails the address, and nothing changes", async () => {
    const email = `forwarded-${Date.now()}@example.test`;
    const old = await seedMailedAddress(email);
    const newer = await seedCampaign(ctx.owner.workspaceId, 'newsletter');
    expect((await oneClick(urls().unsubscribe(old.recipientId, newer))).status).toBe(200);
    const before = await stateOf();

    const res = await post(old.prefs, [['action', 'resubscribe-all']], crossSite);
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toMatch(/<p class="notice" role="status"><strong>To receive all email from Acme Outdoor again, please confirm: we sent a link to f•••@example.test\./);
    expect(res.text).not.toContain(email);
    // Still unsubscribed: the entry, the consent history and everything else as they were.
    expect(await stateOf()).toEqual(before);
    expect(await entriesOf(ctx.owner.workspaceId, email)).toMatchObject([{ scope: 'all', reason: 'unsubscribe' }]);
    expect((await consentsOf(old.contactId!)).map((c) => [c.status, c.source])).toEqual([
      ['opted_in', 'signup-form'],
      ['opted_out', 'unsubscribe-link'],
    ]);

    // The mail: a fixed subject, the workspace named (quoted) only in the body, our own link and no tracking.
    const [mail] = confirmationMails(email);
    expect(confirmationMails(email)).toHaveLength(1);
    expect(mail!.subject).toBe('Please confirm: receive email again');
    expect(mail!.text).toContain('"Acme Outdoor"');
    expect(mail!.text).not.toMatch(/\/t\/[oc]\/|<img|https?:\/\/(?!127\.0\.0\.1:1\/p\/confirm\/)/);
  });

  it('P-11 the mailed link: GET shows one button and changes nothing; the button undoes it once, with consent "confirmed"; again, nothing changes', async () => {
    const email = `confirmed-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    expect((await oneClick(mailed.path)).status).toBe(200);
    expect((await post(mailed.prefs, [['action', 'resubscribe-all']])).status).toBe(200);
    const link = confirmationPath(email);

    const before = await stateOf();
    const page = await ctx.app.api('GET', link);
    expect(page.status).toBe(200);
    expectNoRedirectNoCookie(page);
    expect(page.text).toContain('Turn back on all email from Acme Outdoor to c•••@example.test?');
    expect(page.text.match(/<button/g)).toHaveLength(1);
    expect(page.text).not.toMatch(/<script|<img/);
    // A POST without the button's field (a scanner, a stray request) changes nothing either.
    expect((await confirm(link, '')).status).toBe(400);
    expect(await stateOf()).toEqual(before);

    const done = await confirm(link);
    expect(done.status).toBe(200);
    expectNoRedirectNoCookie(done);
    expect(done.text).toContain('role="status"');
    expect(done.text).toContain('Confirmed: all email from Acme Outdoor to c•••@example.test is turned back on.');
    expect(await entriesOf(ctx.owner.workspaceId, email)).toEqual([]);
    expect((await consentsOf(mailed.contactId!)).map((c) => [c.status, c.source, c.actor])).toEqual([
      ['opted_in', 'signup-form', `user:${ctx.owner.userId}`],
      ['opted_out', 'unsubscribe-link', 'recipient'],
      ['opted_in', 'preference-center-confirmed', 'recipient'],
    ]);
    const removed = (await auditOf(ctx.owner.workspaceId)).filter((a) => a.actor === `recipient:${mailed.recipientId}` && a.action === 'suppression.removed');
    expect(removed).toMatchObject([{ detail: { via: 'preference-center-confirmed', entry: { scope: 'all', reason: 'unsubscribe' } } }]);

    // Used up: the same link again answers plainly and changes nothing.
    const after = await stateOf();
    const again = await confirm(link);
    expect(again.status).toBe(200);
    expect(again.text).toContain('Nothing needed to change');
    expect((await ctx.app.api('GET', link)).text).toContain('Nothing to confirm');
    expect(await stateOf()).toEqual(after);
  });

  it('the button pressed twice at once: both answered, one removal, one consent record', async () => {
    for (let round = 0; round < 4; round += 1) {
      const email = `twice-${round}-${Date.now()}@example.test`;
      const mailed = await seedMailedAddress(email);
      expect((await oneClick(mailed.path)).status).toBe(200);
      await post(mailed.prefs, [['action', 'resubscribe-all']]);
      const link = confirmationPath(email);
      const answers = await Promise.all([confirm(link), confirm(link)]);
      expect(answers.map((a) => a.status), `round ${round}`).toEqual([200, 200]);
      expect(await entriesOf(ctx.owner.workspaceId, email)).toEqual([]);
      expect((await consentsOf(mailed.contactId!)).map((c) => c.source)).toEqual(['signup-form', 'unsubscribe-link', 'preference-center-confirmed']);
      const removals = (await auditOf(ctx.owner.workspaceId)).filter((a) => a.actor === `recipient:${mailed.recipientId}` && a.action === 'suppression.removed');
      expect(removals).toHaveLength(1);
    }
  });

  it('P-08 a link mailed before a new opt-out does not undo the new one', async () => {
    const email = `again-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    expect((await oneClick(mailed.path)).status).toBe(200);
    await post(mailed.prefs, [['action', 'resubscribe-all']]);
    const link = confirmationPath(email);
    expect((await confirm(link)).status).toBe(200);
    // They opt out again: a new entry, which the earlier link does not name.
    expect((await oneClick(mailed.path)).status).toBe(200);
    const before = await stateOf();
    expect((await confirm(link)).text).toContain('Nothing needed to change');
    expect(await stateOf()).toEqual(before);
    expect(await entriesOf(ctx.owner.workspaceId, email)).toMatchObject([{ scope: 'all', reason: 'unsubscribe' }]);
  });

  it('P-11 checking an opted-out topic again is confirmed by mail too; the form\'s new opt-outs apply at once', async () => {
    const email = `topic-${Date.now()}@example.test`;
    await seedCampaign(ctx.owner.workspaceId, 'events');
    const mailed = await seedMailedAddress(email);
    expect((await post(mailed.prefs, [['topics', 'newsletter'], ['topics', 'events'], ['subscribed', 'events']])).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, email)).toMatchObject([{ scope: 'topic:newsletter' }]);

    // One form: newsletter checked again (to confirm), events unchecked (at once).
    const res = await post(mailed.prefs, [['topics', 'newsletter'], ['topics', 'events'], ['subscribed', 'newsletter']], crossSite);
    expect(res.status).toBe(200);
    expect(res.text).toContain('Your other choices are saved. To receive the topic &quot;newsletter&quot; again, please confirm');
    expect(res.text).toContain('<input type="checkbox" name="subscribed" value="newsletter">');
    expect((await entriesOf(ctx.owner.workspaceId, email)).map((e) => e.scope).sort()).toEqual(['topic:events', 'topic:newsletter']);
    expect(confirmationMails(email).at(-1)!.text).toContain('- the topic "newsletter"');

    const link = confirmationPath(email);
    expect((await ctx.app.api('GET', link)).text).toContain('Turn back on the topic &quot;newsletter&quot; to t•••@example.test?');
    expect((await confirm(link)).status).toBe(200);
    expect((await entriesOf(ctx.owner.workspaceId, email)).map((e) => e.scope)).toEqual(['topic:events']);
    // A topic neither gives nor withdraws consent as a whole.
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in']);
  });

  it('expired, forged and other-purpose links get a plain page and change nothing', async () => {
    const email = `expired-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    expect((await oneClick(mailed.path)).status).toBe(200);
    const [entry] = await entriesOf(ctx.owner.workspaceId, email);
    const expired = createSignedTokens(ctx.app.config.jwt, { audience: 'inboxtrail-resubscribe', ttlSeconds: -60 }).sign({ e: [entry!.id] }, mailed.recipientId);
    const otherAudience = createSignedTokens(ctx.app.config.jwt, { audience: 'inboxtrail-email-change', ttlSeconds: 3600 }).sign({ e: [entry!.id] }, mailed.recipientId);
    const session = ctx.owner.token;
    const before = await stateOf();

    for (const method of ['GET', 'POST'] as const) {
      const call = (token: string) => (method === 'GET' ? ctx.app.api('GET', `/p/confirm/${token}`) : confirm(`/p/confirm/${token}`));
      const late = await call(expired);
      expect(late.status).toBe(410);
      expect(late.text).toContain('This confirmation link has expired');
      expect(late.headers.get('set-cookie')).toBeNull();
      for (const token of [otherAudience, session, `${expired.slice(0, -3)}abc`, 'not-a-token', mailed.prefs.slice(3)]) {
        const bad = await call(token);
        expect(bad.status, `${method} ${token.slice(0, 20)}`).toBe(404);
        expect(bad.text).toContain('This link is not valid');
      }
    }
    expect(await stateOf()).toEqual(before);
  });

  it("P-08 a user's complaint added after the mail holds the entry: the link is refused (409) and nothing changes", async () => {
    const email = `held-later-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    expect((await oneClick(mailed.path)).status).toBe(200);
    await post(mailed.prefs, [['action', 'resubscribe-all']]);
    const link = confirmationPath(email);
    const complaint = await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email, reason: 'complaint' } });
    expect(complaint.body).toMatchObject({ heldReason: 'complaint' });

    expect((await ctx.app.api('GET', link)).text).toContain('This cannot be turned back on here');
    const before = await stateOf();
    const refused = await confirm(link);
    expect(refused.status).toBe(409);
    expect(refused.text).toContain('Nothing was changed');
    expect(await stateOf()).toEqual(before);
  });

  it('at most 3 confirmation mails a day to one address, whoever asks; past it the page says so and nothing is mailed', async () => {
    const email = `capped-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    expect((await oneClick(mailed.path)).status).toBe(200);
    for (let i = 0; i < 3; i += 1) expect((await post(mailed.prefs, [['action', 'resubscribe-all']], crossSite)).text).toContain('we sent a link');
    const fourth = await post(mailed.prefs, [['action', 'resubscribe-all']], crossSite);
    expect(fourth.status).toBe(200);
    expect(fourth.text).toContain('We already sent links to confirm this to c•••@example.test today');
    expect(confirmationMails(email)).toHaveLength(3);
    // Each mailed link still works for its owner.
    expect((await confirm(confirmationPath(email))).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, email)).toEqual([]);
  });

  it('a confirmation mail that cannot be sent: 503 page, the form\'s opt-outs saved, the undo not applied, and not counted', async () => {
    const email = `mail-down-${Date.now()}@example.test`;
    const mailed = await seedMailedAddress(email);
    await seedCampaign(ctx.owner.workspaceId, 'events');
    await post(mailed.prefs, [['topics', 'newsletter'], ['topics', 'events'], ['subscribed', 'events']]);
    const mailer = ctx.app.services.accountMailer;
    const send = mailer.send;
    mailer.send = async () => {
      throw new Error('relay down');
    };
    try {
      const res = await post(mailed.prefs, [['topics', 'newsletter'], ['topics', 'events'], ['subscribed', 'newsletter']]);
      expect(res.status).toBe(503);
      expect(res.text).toContain('Your other choices are saved. The mail to confirm this could not be sent just now');
    } finally {
      mailer.send = send;
    }
    expect((await entriesOf(ctx.owner.workspaceId, email)).map((e) => e.scope).sort()).toEqual(['topic:events', 'topic:newsletter']);
    // Not counted: three more requests are still mailed.
    for (let i = 0; i < 3; i += 1) expect((await post(mailed.prefs, [['topics', 'newsletter'], ['subscribed', 'newsletter']])).text).toContain('we sent a link');
  });
});
