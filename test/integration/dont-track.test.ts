import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { auditLog, consents, contacts, trackingEvents, untrackedHitCounts } from '../../src/db/schema.js';
import { TRACKING_MAIL_SUBJECT } from '../../src/suppression/resubscribe.service.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A recipient restricts collection (Soffront: "you may choose to restrict the collection or
 * use"): the preference center's "don't track my opens and clicks" is kept on the contact,
 * their next campaign mail and 1:1 mail carry no pixel and no tracked link (read in the
 * recipient's sandbox inbox), and a hit from older mail is kept only as a count.
 */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
let mailboxId: string;
const SENDER = `news-${randomUUID()}@acme.test`;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const PIXEL = /\/t\/o\/[A-Za-z0-9_-]+\.gif/;
const CLICK = /\/t\/c\/[A-Za-z0-9_-]+/;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, SENDER)).id;
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

/** The newest mail with this subject in the recipient's own inbox. */
function received(email: string, subject: string) {
  const message = ctx.app.sandbox.control.listMessages(email).find((m) => m.subject === subject);
  expect(message, `${subject} in ${email}`).toBeDefined();
  return ctx.app.sandbox.control.getMessage(email, message!.id);
}

async function sendCampaign(subject: string, contactIds: string[]) {
  const campaignId = await fixtures.launched(mailboxId, subject, contactIds);
  await fixtures.drain(campaignId);
  return campaignId;
}

const pathOf = (url: string) => new URL(url).pathname;

describe("don't track my opens and clicks", () => {
  it('the refusing recipient\'s next campaign mail has no pixel and no tracked link; old mail\'s hits are only counted; others are tracked as before', async () => {
    const [refuser, other] = await fixtures.audience(2, { prefix: 'dnt' });
    const first = await sendCampaign(`First ${randomUUID()}`, [refuser!.id, other!.id]);
    const firstSubject = (await ctx.app.api('GET', `/api/campaigns/${first}`, { token: ctx.owner.token })).body.subject;
    const oldMail = received(refuser!.email, firstSubject);
    expect(oldMail.html).toMatch(PIXEL);
    const prefs = /Choose what you receive: (\S+)/.exec(oldMail.text)![1]!;

    // The preference center offers the choice; choosing it is saved, audited, and changes no consent.
    const page = await ctx.app.api('GET', pathOf(prefs));
    expect(page.status).toBe(200);
    expect(page.text).toContain("Don't track my opens and clicks");
    const consentsBefore = await ctx.app.database.db.select().from(consents).where(eq(consents.contactId, refuser!.id));
    const saved = await ctx.app.api('POST', pathOf(prefs), { body: 'action=save&tracking=refuse', headers: FORM });
    expect(saved.status, saved.text).toBe(200);
    expect(saved.text).toContain('Your choices are saved.');
    expect(saved.text).toMatch(/value="refuse" checked/);
    const [contact] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, refuser!.id));
    expect(contact!.trackingRefusedAt).not.toBeNull();
    const audit = await ctx.app.database.db.select().from(auditLog).where(and(eq(auditLog.workspaceId, ctx.owner.workspaceId), eq(auditLog.action, 'tracking.refused')));
    expect(audit).toEqual([expect.objectContaining({ subjectType: 'contact', subjectId: refuser!.id, actor: expect.stringMatching(/^recipient:/) })]);
    expect(await ctx.app.database.db.select().from(consents).where(eq(consents.contactId, refuser!.id))).toEqual(consentsBefore);
    // Saving the same choice again changes nothing.
    const again = await ctx.app.api('POST', pathOf(prefs), { body: 'action=save&tracking=refuse', headers: FORM });
    expect(again.text).toContain('Nothing needed to change.');

    // A hit that still arrives from the old mail: answered as always, stored only as a count.
    await ctx.app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${first}::uuid`);
    const browser = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' };
    const open = await fetch(`${ctx.app.baseUrl}${PIXEL.exec(oldMail.html!)![0]}`, { headers: browser });
    expect(open.status).toBe(200);
    const click = await fetch(`${ctx.app.baseUrl}${CLICK.exec(oldMail.html!)![0]}`, { headers: browser, redirect: 'manual' });
    expect(click.status).toBe(302);
    expect(click.headers.get('location')).toBe('https://acme.test/news');
    const otherMail = received(other!.email, firstSubject);
    expect((await fetch(`${ctx.app.baseUrl}${PIXEL.exec(otherMail.html!)![0]}`, { headers: browser })).status).toBe(200);
    await ctx.app.services.tracking.flush();

    const events = await ctx.app.database.db.select().from(trackingEvents).where(eq(trackingEvents.campaignId, first));
    const ledger = await fixtures.ledger(first);
    const sendOf = (email: string) => ledger.find((row) => row.email === email)!.id;
    expect(events.filter((e) => e.sendId === sendOf(refuser!.email))).toEqual([]);
    expect(events.filter((e) => e.sendId === sendOf(other!.email))).toHaveLength(1);
    const counts = await ctx.app.database.db.select().from(untrackedHitCounts).where(eq(untrackedHitCounts.campaignId, first));
    expect(counts.map((c) => [c.type, c.hits]).sort()).toEqual([
      ['click', 1],
      ['open', 1],
    ]);
    const stats = (await ctx.app.api('GET', `/api/campaigns/${first}/stats`, { token: ctx.owner.token })).body;
    expect(stats.opens.human + stats.opens.machine + stats.opens.unknown).toBe(1);

    // The next campaign: the refuser's copy is untracked, the other's is tracked as before.
    const second = `Second ${randomUUID()}`;
    await sendCampaign(second, [refuser!.id, other!.id]);
    const untracked = received(refuser!.email, second);
    expect(untracked.html).not.toMatch(PIXEL);
    expect(untracked.raw).not.toContain('/t/o/');
    expect(untracked.raw).not.toContain('/t/c/');
    expect(untracked.html).toContain('href="https://acme.test/news"');
    // Opting out stays one click away (P-09).
    expect(untracked.headers.find((h) => h.name.toLowerCase() === 'list-unsubscribe')?.value).toMatch(/\/u\//);
    expect(untracked.html).toContain('Unsubscribe</a>');
    const tracked = received(other!.email, second);
    expect(tracked.html).toMatch(PIXEL);
    expect(tracked.html).toMatch(CLICK);
  });

  it("a don't-track recipient's 1:1 mail has no pixel and no tracked link", async () => {
    const [person] = await fixtures.audience(1, { prefix: 'dnt1' });
    await ctx.app.database.db.update(contacts).set({ trackingRefusedAt: new Date() }).where(eq(contacts.id, person!.id));
    const subject = `Personal ${randomUUID()}`;
    const sent = await ctx.app.api('POST', '/api/messages', {
      token: ctx.owner.token,
      json: { mailboxId, to: [person!.email], subject, html: '<p>See <a href="https://acme.test/offer">the offer</a></p>' },
    });
    expect(sent.status, sent.text).toBe(201);
    const mail = received(person!.email, subject);
    expect(mail.raw).not.toContain('/t/o/');
    expect(mail.raw).not.toContain('/t/c/');
    expect(mail.html).toContain('href="https://acme.test/offer"');
  });

  it('allowing tracking again takes the mailed confirmation, then is saved and audited; a bad value or an address that is no contact changes nothing', async () => {
    const [person] = await fixtures.audience(1, { prefix: 'dnt2' });
    const subject = `Third ${randomUUID()}`;
    await sendCampaign(subject, [person!.id]);
    const prefs = pathOf(/Choose what you receive: (\S+)/.exec(received(person!.email, subject).text)![1]!);

    for (const body of ['action=save&tracking=maybe', 'action=save&tracking=refuse&tracking=allow']) {
      const bad = await ctx.app.api('POST', prefs, { body, headers: FORM });
      expect(bad.status, body).toBe(400);
    }
    const [untouched] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, person!.id));
    expect(untouched!.trackingRefusedAt).toBeNull();

    expect((await ctx.app.api('POST', prefs, { body: 'action=save&tracking=refuse', headers: FORM })).status).toBe(200);
    // The form only mails the address a link (a link from the mail is no proof of who holds it); its button allows.
    const allowed = await ctx.app.api('POST', prefs, { body: 'action=save&tracking=allow', headers: FORM });
    expect(allowed.text).toContain('please confirm: we sent a link to');
    const [pending] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, person!.id));
    expect(pending!.trackingRefusedAt).not.toBeNull();
    const mail = (ctx.app.services.accountMailer.outbox ?? []).filter((m) => m.to === person!.email && m.subject === TRACKING_MAIL_SUBJECT);
    expect(mail).toHaveLength(1);
    const link = pathOf(/^(https?:\/\/\S+\/p\/confirm\/\S+)$/m.exec(mail[0]!.text)![1]!);
    expect((await ctx.app.api('POST', link, { body: 'confirm=yes', headers: FORM })).text).toContain('may see again when you open its email and click its links');
    const [after] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, person!.id));
    expect(after!.trackingRefusedAt).toBeNull();
    const audit = await ctx.app.database.db.select().from(auditLog).where(and(eq(auditLog.subjectId, person!.id), eq(auditLog.action, 'tracking.allowed')));
    expect(audit).toMatchObject([{ detail: { via: 'preference-center-confirmed' } }]);

    // The contact is gone (the address is only a recipient now): the choice is not offered, and posting it is refused.
    await ctx.app.database.db.delete(contacts).where(eq(contacts.id, person!.id));
    const page = await ctx.app.api('GET', prefs);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain("Don't track");
    expect((await ctx.app.api('POST', prefs, { body: 'action=save&tracking=refuse', headers: FORM })).status).toBe(400);
  });
});

describe("don't track: the person, not only the address", () => {
  const browser = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' };

  it("a refusal holds for hits on the contact's older mail after its address changed; the old mail's page shows it and cannot undo it", async () => {
    const [person, other] = await fixtures.audience(2, { prefix: 'dntmove' });
    const campaignId = await sendCampaign(`Before the move ${randomUUID()}`, [person!.id, other!.id]);
    const subject = (await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body.subject;
    await ctx.app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${campaignId}::uuid`);
    const oldMail = received(person!.email, subject);
    const prefs = pathOf(/Choose what you receive: (\S+)/.exec(oldMail.text)![1]!);
    expect((await ctx.app.api('POST', prefs, { body: 'action=save&tracking=refuse', headers: FORM })).status).toBe(200);

    const moved = await ctx.app.api('PATCH', `/api/contacts/${person!.id}`, { token: ctx.owner.token, json: { email: `moved-${randomUUID()}@example.test` } });
    expect(moved.status, moved.text).toBe(200);
    expect((await fetch(`${ctx.app.baseUrl}${PIXEL.exec(oldMail.html!)![0]}`, { headers: browser })).status).toBe(200);
    expect((await fetch(`${ctx.app.baseUrl}${PIXEL.exec(received(other!.email, subject).html!)![0]}`, { headers: browser })).status).toBe(200);
    await ctx.app.services.tracking.flush();
    const ledger = await fixtures.ledger(campaignId);
    const sendOf = (email: string) => ledger.find((row) => row.email === email)!.id;
    const events = await ctx.app.database.db.select().from(trackingEvents).where(eq(trackingEvents.campaignId, campaignId));
    expect(events.filter((e) => e.sendId === sendOf(person!.email))).toEqual([]);
    expect(events.filter((e) => e.sendId === sendOf(other!.email))).toHaveLength(1);
    expect((await ctx.app.database.db.select().from(untrackedHitCounts).where(eq(untrackedHitCounts.campaignId, campaignId))).map((c) => [c.type, c.hits])).toEqual([['open', 1]]);

    // The old mail's page shows the refusal; someone now at the old address cannot undo it from there
    // (a link may be forwarded, the address another person's since): allowing reaches only the contact at it.
    const page = await ctx.app.api('GET', prefs);
    expect(page.text).toMatch(/value="refuse" checked/);
    const newcomer = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: person!.email } });
    expect(newcomer.status).toBe(201);
    const allowed = await ctx.app.api('POST', prefs, { body: 'action=unsubscribe-all&tracking=allow', headers: FORM });
    expect(allowed.status, allowed.text).toBe(200);
    const [after] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, person!.id));
    expect(after!.trackingRefusedAt).not.toBeNull();
    // Nothing there for a confirmation to clear either: no mail.
    expect((ctx.app.services.accountMailer.outbox ?? []).filter((m) => m.subject === TRACKING_MAIL_SUBJECT && m.to === person!.email)).toEqual([]);
    // A refusal from that page still reaches both.
    expect((await ctx.app.api('POST', prefs, { body: 'action=save&tracking=refuse', headers: FORM })).status).toBe(200);
    const [atAddress] = await ctx.app.database.db.select().from(contacts).where(eq(contacts.id, newcomer.body.id));
    expect(atAddress!.trackingRefusedAt).not.toBeNull();
  });

  it('the choice is kept on the live contact at the address, never on a deleted one', async () => {
    const [first] = await fixtures.audience(1, { prefix: 'dntdel' });
    const subject = `Before re-adding ${randomUUID()}`;
    await sendCampaign(subject, [first!.id]);
    const prefs = pathOf(/Choose what you receive: (\S+)/.exec(received(first!.email, subject).text)![1]!);
    expect((await ctx.app.api('DELETE', `/api/contacts/${first!.id}`, { token: ctx.owner.token })).status).toBe(204);
    const again = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: first!.email } });
    expect(again.status).toBe(201);

    const saved = await ctx.app.api('POST', prefs, { body: 'action=save&tracking=refuse', headers: FORM });
    expect(saved.status, saved.text).toBe(200);
    expect(saved.text).toMatch(/value="refuse" checked/);
    const rows = await ctx.app.database.db.select().from(contacts).where(eq(contacts.workspaceId, ctx.owner.workspaceId));
    expect(rows.find((c) => c.id === again.body.id)!.trackingRefusedAt).not.toBeNull();
    expect(rows.find((c) => c.id === first!.id)!.trackingRefusedAt).toBeNull();
  });
});

describe('P-13 a deleted contact', () => {
  it("P-13 hits on mail sent before a contact's deletion are answered and only counted; a new contact at the same address is tracked as any other", async () => {
    const [gone, stays] = await fixtures.audience(2, { prefix: 'gone' });
    const campaignId = await sendCampaign(`Before deletion ${randomUUID()}`, [gone!.id, stays!.id]);
    const subject = (await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body.subject;
    await ctx.app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${campaignId}::uuid`);
    expect((await ctx.app.api('DELETE', `/api/contacts/${gone!.id}`, { token: ctx.owner.token })).status).toBe(204);

    const browser = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' };
    const open = (email: string) => fetch(`${ctx.app.baseUrl}${PIXEL.exec(received(email, subject).html!)![0]}`, { headers: browser });
    expect((await open(gone!.email)).status).toBe(200);
    expect((await open(stays!.email)).status).toBe(200);
    await ctx.app.services.tracking.flush();
    const ledger = await fixtures.ledger(campaignId);
    const sendOf = (email: string) => ledger.find((row) => row.email === email)!.id;
    const events = await ctx.app.database.db.select().from(trackingEvents).where(eq(trackingEvents.campaignId, campaignId));
    expect(events.filter((e) => e.sendId === sendOf(gone!.email))).toEqual([]);
    expect(events.filter((e) => e.sendId === sendOf(stays!.email))).toHaveLength(1);
    const counts = await ctx.app.database.db.select().from(untrackedHitCounts).where(eq(untrackedHitCounts.campaignId, campaignId));
    expect(counts.map((c) => [c.type, c.hits])).toEqual([['open', 1]]);

    // The same address, added again: a new contact, whose mail is tracked.
    const again = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: gone!.email } });
    expect(again.status).toBe(201);
    await ctx.app.api('POST', `/api/contacts/${again.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'signup-form' } });
    const later = await sendCampaign(`After ${randomUUID()}`, [again.body.id]);
    const laterSubject = (await ctx.app.api('GET', `/api/campaigns/${later}`, { token: ctx.owner.token })).body.subject;
    await ctx.app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${later}::uuid`);
    expect((await fetch(`${ctx.app.baseUrl}${PIXEL.exec(received(gone!.email, laterSubject).html!)![0]}`, { headers: browser })).status).toBe(200);
    await ctx.app.services.tracking.flush();
    expect(await ctx.app.database.db.select().from(trackingEvents).where(eq(trackingEvents.campaignId, later))).toHaveLength(1);
  });
});
