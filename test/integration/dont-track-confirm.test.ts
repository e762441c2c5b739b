import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { createSignedTokens } from '../../src/auth/signed-tokens.js';
import { auditLog, contacts } from '../../src/db/schema.js';
import { RESUBSCRIBE_MAIL_SUBJECT, TRACKING_MAIL_SUBJECT } from '../../src/suppression/resubscribe.service.js';
import { FORM, expectNoRedirectNoCookie, useOptOutApp } from '../helpers/opt-out.js';
import { snapshotCounts } from '../helpers/test-db.js';

/*
 * Allowing tracking again ("Don't track my opens and clicks" turned off) takes the address's
 * confirmation, as undoing an opt-out does (resubscribe.service.ts). A link from the mail proves
 * nothing about who holds it: an attacker's finding — with a person's old newsletter, a
 * cross-site form post of `tracking=allow` cleared their refusal at once. A refusal stays instant.
 */

const ctx = useOptOutApp();
const { db, seedCampaign, seedMailedAddress, oneClick, entriesOf, confirmationMails, confirmationPath, confirm } = ctx;

const crossSite = { ...FORM, origin: 'https://evil.example', referer: 'https://evil.example/page' };
const post = (path: string, body: string, headers: Record<string, string> = FORM) => ctx.app.api('POST', path, { body, headers });

async function refusedAt(contactId: string) {
  const [row] = await db().select({ at: contacts.trackingRefusedAt }).from(contacts).where(eq(contacts.id, contactId));
  return row!.at;
}

const allowedAudit = async (contactId: string) =>
  db().select().from(auditLog).where(and(eq(auditLog.subjectId, contactId), eq(auditLog.action, 'tracking.allowed')));

/** Everything a change would touch but the mail counter. */
async function stateOf() {
  const { auth_attempts: _counter, ...rest } = await snapshotCounts(db());
  return rest;
}

/** A contact who refused tracking, with the preference link of an older mail. */
async function refuser(prefix: string) {
  const email = `${prefix}-${Date.now()}@example.test`;
  const mailed = await seedMailedAddress(email);
  expect((await post(mailed.prefs, 'action=save&tracking=refuse')).text).toContain('Your choices are saved.');
  const at = await refusedAt(mailed.contactId!);
  expect(at).not.toBeNull();
  return { ...mailed, email, at: at! };
}

describe('allowing tracking again takes a confirmation by the address', () => {
  it("an old link's cross-site POST re-allowing tracking changes nothing and mails the address; the mailed link's button clears the refusal once", async () => {
    const person = await refuser('track-old');
    const before = await stateOf();

    const res = await post(person.prefs, 'action=save&tracking=allow', crossSite);
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toMatch(
      /<p class="notice" role="status"><strong>To let Acme Outdoor see when you open its email and click its links again, please confirm: we sent a link to t•••@example\.test\. It works for 24 hours, and until it is used your opens and clicks stay untracked\.<\/strong><\/p>/,
    );
    expect(res.text).toMatch(/value="refuse" checked/);
    expect(await refusedAt(person.contactId!)).toEqual(person.at);
    expect(await stateOf()).toEqual(before);

    const mails = confirmationMails(person.email);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.subject).toBe(TRACKING_MAIL_SUBJECT);
    expect(mails[0]!.text).toContain('"Acme Outdoor" seeing when you open its email and click its links');
    expect(mails[0]!.text).toContain('ignore this mail: your opens and clicks stay untracked.');
    expect(mails[0]!.text).not.toMatch(/\/t\/[oc]\/|<img|https?:\/\/(?!127\.0\.0\.1:1\/p\/confirm\/)/);

    // The link's page lists it and changes nothing; a POST without the button's field neither.
    const link = confirmationPath(person.email);
    const page = await ctx.app.api('GET', link);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Let Acme Outdoor see again when t•••@example.test opens its email and clicks its links?');
    expect(page.text.match(/<button/g)).toHaveLength(1);
    expect(page.text).toContain('Yes, allow tracking again');
    expect((await confirm(link, '')).status).toBe(400);
    expect(await stateOf()).toEqual(before);
    expect(await refusedAt(person.contactId!)).toEqual(person.at);

    const done = await confirm(link);
    expect(done.status).toBe(200);
    expect(done.text).toContain('role="status"');
    expect(done.text).toContain('Confirmed: Acme Outdoor may see again when you open its email and click its links.');
    expect(await refusedAt(person.contactId!)).toBeNull();
    expect(await allowedAudit(person.contactId!)).toMatchObject([{ actor: `recipient:${person.recipientId}`, subjectType: 'contact', detail: { via: 'preference-center-confirmed' } }]);

    // Used up; and a refusal made again afterwards is another one, which the link does not clear.
    expect((await confirm(link)).text).toContain('Nothing needed to change');
    expect((await post(person.prefs, 'action=save&tracking=refuse')).status).toBe(200);
    const after = await stateOf();
    expect((await ctx.app.api('GET', link)).text).toContain('Nothing to confirm');
    expect((await confirm(link)).text).toContain('Nothing needed to change');
    expect(await refusedAt(person.contactId!)).not.toBeNull();
    expect(await stateOf()).toEqual(after);
  });

  it('one form undoing an opt-out and allowing tracking: one mail, one link, whose button does both', async () => {
    const person = await refuser('track-both');
    expect((await oneClick(person.path)).status).toBe(200);
    const res = await post(person.prefs, 'action=resubscribe-all&tracking=allow', crossSite);
    expect(res.text).toContain('To receive all email from Acme Outdoor again, and let Acme Outdoor see when you open its email and click its links again, please confirm');
    expect(res.text).toContain('until it is used you stay unsubscribed, and your opens and clicks stay untracked.');
    const mails = confirmationMails(person.email);
    expect(mails.map((m) => m.subject)).toEqual([RESUBSCRIBE_MAIL_SUBJECT]);
    expect(mails[0]!.text).toContain('- all email from "Acme Outdoor"');
    expect(mails[0]!.text).toContain('seeing when you open its email and click its links');
    expect(mails[0]!.text).toContain('ignore this mail: you stay unsubscribed, and your opens and clicks stay untracked.');
    expect(await refusedAt(person.contactId!)).not.toBeNull();
    expect(await entriesOf(ctx.owner.workspaceId, person.email)).toHaveLength(1);

    const link = confirmationPath(person.email);
    expect((await ctx.app.api('GET', link)).text).toContain('Yes, turn these back on');
    const done = await confirm(link);
    expect(done.text).toContain('Confirmed: all email from Acme Outdoor to t•••@example.test is turned back on, and Acme Outdoor may see again');
    expect(await entriesOf(ctx.owner.workspaceId, person.email)).toEqual([]);
    expect(await refusedAt(person.contactId!)).toBeNull();
  });

  it('the button pressed twice at once: one clearance, one audit row', async () => {
    for (let round = 0; round < 3; round += 1) {
      const person = await refuser(`track-twice-${round}`);
      await post(person.prefs, 'action=save&tracking=allow');
      const link = confirmationPath(person.email);
      const answers = await Promise.all([confirm(link), confirm(link)]);
      expect(answers.map((a) => a.status), `round ${round}`).toEqual([200, 200]);
      expect(await refusedAt(person.contactId!)).toBeNull();
      expect(await allowedAudit(person.contactId!)).toHaveLength(1);
    }
  });

  it('a contact no longer at the address when the link is used keeps its refusal', async () => {
    const person = await refuser('track-moved');
    await post(person.prefs, 'action=save&tracking=allow');
    const link = confirmationPath(person.email);
    const moved = await ctx.app.api('PATCH', `/api/contacts/${person.contactId}`, { token: ctx.owner.token, json: { email: `elsewhere-${Date.now()}@example.test` } });
    expect(moved.status, moved.text).toBe(200);
    expect((await confirm(link)).text).toContain('Nothing needed to change');
    expect(await refusedAt(person.contactId!)).toEqual(person.at);
  });

  it('the same daily cap as undoing an opt-out; nothing to clear, nothing mailed', async () => {
    const person = await refuser('track-cap');
    await seedCampaign(ctx.owner.workspaceId, 'events');
    for (let i = 0; i < 3; i += 1) expect((await post(person.prefs, 'action=save&tracking=allow')).text).toContain('we sent a link');
    const fourth = await post(person.prefs, 'action=save&tracking=allow');
    expect(fourth.text).toContain('We already sent links to confirm this to t•••@example.test today and send no more for now: please use the link in one of those mails. Until then your opens and clicks stay untracked.');
    expect(confirmationMails(person.email)).toHaveLength(3);
    expect((await confirm(confirmationPath(person.email))).status).toBe(200);
    // Allowed now: the form's "allow" (the radio's default) has nothing left to confirm.
    expect((await post(person.prefs, 'action=save&tracking=allow')).text).toContain('Nothing needed to change.');
    expect(confirmationMails(person.email)).toHaveLength(3);
  });

  it('links mailed before this change (no `t`) still work; a malformed `t` is the plain 404', async () => {
    const person = await refuser('track-compat');
    expect((await oneClick(person.path)).status).toBe(200);
    const [entry] = await entriesOf(ctx.owner.workspaceId, person.email);
    const sign = createSignedTokens(ctx.app.config.jwt, { audience: 'inboxtrail-resubscribe', ttlSeconds: 3600 });
    const before = await stateOf();
    for (const claims of [{ e: [] }, { e: [], t: [[person.contactId, 'x']] }, { e: [], t: [['not-a-uuid', person.at.getTime()]] }, { e: [entry!.id], t: 'x' }]) {
      const bad = await confirm(`/p/confirm/${sign.sign(claims, person.recipientId)}`);
      expect(bad.status, JSON.stringify(claims)).toBe(404);
    }
    expect(await stateOf()).toEqual(before);

    const old = `/p/confirm/${sign.sign({ e: [entry!.id], c: person.campaignId }, person.recipientId)}`;
    expect((await ctx.app.api('GET', old)).text).toContain('Yes, send me this email again');
    expect((await confirm(old)).text).toContain('Confirmed: all email from Acme Outdoor to t•••@example.test is turned back on.');
    expect(await entriesOf(ctx.owner.workspaceId, person.email)).toEqual([]);
    // It names no refusal: tracking stays refused.
    expect(await refusedAt(person.contactId!)).toEqual(person.at);
  });
});
