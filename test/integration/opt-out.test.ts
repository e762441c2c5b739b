import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, campaigns, consents, recipients, suppressions } from '../../src/db/schema.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createSuppressionRepo } from '../../src/suppression/suppression.repo.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { signUp, startTestApp, TEST_ENV, type TestApp } from '../helpers/test-app.js';

/*
 * The recipient's side of opting out: RFC 8058 one-click, the unsubscribe page, the
 * preference center (P-08, P-09, P-11; invariants 2, 7, 9). Campaign rows are seeded
 * with Drizzle: a token only needs a recipient row and, optionally, a campaign.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let other: Awaited<ReturnType<typeof signUp>>;
const db = () => app.database.db;
const codec = () => createTokenCodec(app.config.trackingSecrets);
const urls = () => createTrackingUrls(codec(), '');

const ONE_CLICK = 'List-Unsubscribe=One-Click';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app, { workspaceName: 'Acme Outdoor' });
  other = await signUp(app, { workspaceName: 'Other Co' });
});
afterAll(async () => {
  await app.close();
});

async function seedCampaign(workspaceId: string, topic: string | null = 'Newsletter') {
  const [row] = await db()
    .insert(campaigns)
    .values({ workspaceId, name: `Campaign ${topic}`, kind: 'marketing', subject: 'Hello', audience: { contactIds: [] }, topic })
    .returning({ id: campaigns.id });
  return row!.id;
}

async function seedRecipient(workspaceId: string, email: string) {
  const [row] = await db().insert(recipients).values({ workspaceId, email }).returning({ id: recipients.id });
  return row!.id;
}

async function seedContact(token: string, email: string) {
  const contact = await app.api('POST', '/api/contacts', { token, json: { email } });
  expect(contact.status).toBe(201);
  const consent = await app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token, json: { status: 'opted_in', source: 'signup-form' } });
  expect(consent.status).toBe(201);
  return contact.body.id as string;
}

/** A contact, a campaign and the recipient row the campaign's mail went to, with that mail's unsubscribe path. */
async function seedMailedAddress(email: string, options: { workspace?: typeof owner; topic?: string | null; contact?: boolean } = {}) {
  const workspace = options.workspace ?? owner;
  const contactId = options.contact === false ? undefined : await seedContact(workspace.token, email);
  const campaignId = await seedCampaign(workspace.workspaceId, options.topic === undefined ? 'Newsletter' : options.topic);
  const recipientId = await seedRecipient(workspace.workspaceId, email);
  return { contactId, campaignId, recipientId, path: urls().unsubscribe(recipientId, campaignId), prefs: urls().preferences(recipientId, campaignId) };
}

const oneClick = (path: string, body: RequestInit['body'] = ONE_CLICK, headers: Record<string, string> = FORM) => app.api('POST', path, { body, headers });

async function entriesOf(workspaceId: string, email: string) {
  return db()
    .select()
    .from(suppressions)
    .where(and(eq(suppressions.workspaceId, workspaceId), eq(sql`lower(${suppressions.email})`, email.toLowerCase())));
}

async function auditOf(workspaceId: string) {
  return db().select().from(auditLog).where(eq(auditLog.workspaceId, workspaceId));
}

async function consentsOf(contactId: string) {
  return db().select().from(consents).where(eq(consents.contactId, contactId)).orderBy(consents.at);
}

function expectNoRedirectNoCookie(res: { status: number; headers: Headers }) {
  expect(res.headers.get('location')).toBeNull();
  expect(res.headers.get('set-cookie')).toBeNull();
  expect(res.headers.get('cache-control')).toBe('no-store');
}

describe('RFC 8058 one-click unsubscribe (P-09)', () => {
  it('P-09 a one-click POST (form-urlencoded) suppresses the address workspace-wide, answers 200 with no redirect and no cookie', async () => {
    const mailed = await seedMailedAddress('alice@example.test');
    const res = await oneClick(mailed.path);
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toContain('You are unsubscribed');
    expect(res.text).toContain(`href="${mailed.prefs}"`);

    const [entry, ...more] = await entriesOf(owner.workspaceId, 'alice@example.test');
    expect(more).toEqual([]);
    expect(entry).toMatchObject({ scope: 'all', reason: 'unsubscribe', source: `campaign:${mailed.campaignId}`, createdBy: null });
    const audit = (await auditOf(owner.workspaceId)).filter((a) => a.subjectId === entry!.id);
    expect(audit).toMatchObject([{ actor: `recipient:${mailed.recipientId}`, action: 'suppression.added', subjectType: 'suppression' }]);
  });

  it('P-09 a one-click POST as multipart/form-data works the same', async () => {
    const mailed = await seedMailedAddress('bruno@example.test');
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    const res = await app.api('POST', mailed.path, { body: form });
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(await entriesOf(owner.workspaceId, 'bruno@example.test')).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
  });

  it('P-09 a token without a campaign records source unsubscribe-link', async () => {
    const recipientId = await seedRecipient(owner.workspaceId, 'nocampaign@example.test');
    const res = await oneClick(urls().unsubscribe(recipientId));
    expect(res.status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'nocampaign@example.test')).toMatchObject([{ scope: 'all', reason: 'unsubscribe', source: 'unsubscribe-link' }]);
  });

  it('GET never unsubscribes, however often it is fetched (scanners prefetch links), and shows one no-JS button', async () => {
    const mailed = await seedMailedAddress('carla.scanned@example.test');
    const before = await snapshotCounts(db());
    for (let i = 0; i < 5; i++) {
      const page = await app.api('GET', mailed.path);
      expect(page.status).toBe(200);
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.text).toContain('Acme Outdoor');
      expect(page.text).toContain('c•••@example.test');
      expect(page.text).not.toContain('carla.scanned');
      expect(page.text).toContain(`<form method="post" action="${mailed.path}">`);
      expect(page.text).not.toContain('<script');
    }
    await app.api('HEAD', mailed.path);
    expect(await snapshotCounts(db())).toEqual(before);
    expect(await entriesOf(owner.workspaceId, 'carla.scanned@example.test')).toEqual([]);
  });

  it('P-09 the page\'s button unsubscribes and confirms, with a link to the preference center', async () => {
    const mailed = await seedMailedAddress('dora@example.test');
    const res = await app.api('POST', mailed.path, { body: 'confirm=yes', headers: FORM });
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toContain('You are unsubscribed');
    expect(res.text).toContain(`<a href="${mailed.prefs}">`);
    expect(await entriesOf(owner.workspaceId, 'dora@example.test')).toHaveLength(1);
    // Coming back to the link later says so, and still changes nothing.
    const again = await app.api('GET', mailed.path);
    expect(again.text).toContain('no longer sends email to d•••@example.test');
  });

  it('a replayed one-click is harmless: same 200, one entry, one audit row, one consent record', async () => {
    const mailed = await seedMailedAddress('eve@example.test');
    const replies = await Promise.all([oneClick(mailed.path), oneClick(mailed.path)]);
    replies.push(await oneClick(mailed.path), await app.api('POST', mailed.path, { body: 'confirm=yes', headers: FORM }));
    for (const reply of replies) expect(reply.status).toBe(200);
    const entries = await entriesOf(owner.workspaceId, 'eve@example.test');
    expect(entries).toHaveLength(1);
    expect((await auditOf(owner.workspaceId)).filter((a) => a.subjectId === entries[0]!.id)).toHaveLength(1);
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in', 'opted_out']);
  });

  it('tampered, truncated, foreign-secret, wrong-kind and garbage tokens → 404 page and nothing changes', async () => {
    const mailed = await seedMailedAddress('frank@example.test');
    const token = mailed.path.slice('/u/'.length);
    const flip = (t: string, i: number) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
    const foreign = createTokenCodec([{ version: 'v1', secret: 'another-secret-that-is-long-enough-0123456789' }]).encode({
      kind: 'unsubscribe',
      recipientId: mailed.recipientId,
      campaignId: mailed.campaignId,
    });
    const openToken = codec().encode({ kind: 'open', sendId: mailed.recipientId });
    const unknownRecipient = codec().encode({ kind: 'unsubscribe', recipientId: '00000000-0000-4000-8000-000000000000' });
    const bad = [flip(token, 5), flip(token, token.length - 2), token.slice(0, -3), token.slice(0, 20), foreign, openToken, unknownRecipient, 'x', `${token}A`, 'not*a*token'];

    const before = await snapshotCounts(db());
    for (const t of bad) {
      for (const prefix of ['/u/', '/p/']) {
        const post = await app.api('POST', `${prefix}${encodeURIComponent(t)}`, { body: prefix === '/u/' ? ONE_CLICK : 'action=unsubscribe-all', headers: FORM });
        expect(post.status, `${prefix}${t}`).toBe(404);
        expect(post.text).toContain('This link is not valid');
        expect(post.text).not.toContain('frank');
        const get = await app.api('GET', `${prefix}${encodeURIComponent(t)}`);
        expect(get.status).toBe(404);
      }
    }
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('invariant 7: a token for workspace A\'s recipient never touches workspace B', async () => {
    const email = 'shared.person@example.test';
    const inA = await seedMailedAddress(email);
    const inB = await seedMailedAddress(email, { workspace: other });
    // A (validly signed) token pairing A's recipient with B's campaign is refused outright.
    const mixed = urls().unsubscribe(inA.recipientId, inB.campaignId);
    const before = await snapshotCounts(db());
    expect((await oneClick(mixed)).status).toBe(404);
    expect((await app.api('POST', mixed.replace('/u/', '/p/'), { body: 'action=unsubscribe-all', headers: FORM })).status).toBe(404);
    expect(await snapshotCounts(db())).toEqual(before);

    // A's own token suppresses in A only: B may still mail the person, and B's records are untouched.
    expect((await oneClick(inA.path)).status).toBe(200);
    expect(await entriesOf(owner.workspaceId, email)).toHaveLength(1);
    expect(await entriesOf(other.workspaceId, email)).toEqual([]);
    expect((await consentsOf(inB.contactId!)).map((c) => c.status)).toEqual(['opted_in']);
    expect(await createSuppressionRepo(db(), createAddressHasher(app.config.privacy.suppressionHashKey)).findSuppressed(other.workspaceId, [email])).toEqual(new Set());
    // B's page names B, not A.
    expect((await app.api('GET', inB.path)).text).toContain('Other Co');
  });

  it('keeps working after the campaign and the contact are deleted', async () => {
    const mailed = await seedMailedAddress('gone@example.test');
    await db().delete(campaigns).where(eq(campaigns.id, mailed.campaignId));
    expect((await app.api('DELETE', `/api/contacts/${mailed.contactId}`, { token: owner.token })).status).toBe(204);
    expect((await app.api('GET', mailed.path)).status).toBe(200);
    const res = await oneClick(mailed.path);
    expect(res.status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'gone@example.test')).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
  });

  it('P-09 links keep working after the tracking secret is rotated', async () => {
    const mailed = await seedMailedAddress('rotated@example.test');
    const rotated = await startTestApp({
      database: app.database,
      env: { TRACKING_SECRET: `${TEST_ENV.TRACKING_SECRET},v2:a-newer-tracking-secret-that-is-long-enough-987` },
    });
    try {
      const newToken = createTokenCodec(rotated.config.trackingSecrets).encode({ kind: 'unsubscribe', recipientId: mailed.recipientId });
      expect(newToken).not.toBe(mailed.path.slice(3));
      const res = await rotated.api('POST', mailed.path, { body: ONE_CLICK, headers: FORM });
      expect(res.status).toBe(200);
      expect(await entriesOf(owner.workspaceId, 'rotated@example.test')).toHaveLength(1);
    } finally {
      await rotated.close();
    }
  });

  it('a POST without the One-Click field, of another content type, or too large → 4xx and nothing changes', async () => {
    const mailed = await seedMailedAddress('strict@example.test');
    const before = await snapshotCounts(db());
    const cases = [
      { body: '', headers: FORM, status: 400 },
      { body: 'List-Unsubscribe=Maybe', headers: FORM, status: 400 },
      { body: 'confirm=no', headers: FORM, status: 400 },
      { body: undefined, headers: {}, status: 400 },
      { body: JSON.stringify({ 'List-Unsubscribe': 'One-Click' }), headers: { 'content-type': 'application/json' }, status: 415 },
      { body: ONE_CLICK, headers: { 'content-type': 'text/plain' }, status: 415 },
      { body: '--x\r\nbroken', headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 400 },
      { body: `--x\r\nContent-Disposition: form-data; name="pad"\r\n\r\n${'a'.repeat(70_000)}\r\n--x--\r\n`, headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 413 },
    ];
    for (const c of cases) {
      const res = await app.api('POST', mailed.path, { body: c.body, headers: c.headers });
      expect(res.status, JSON.stringify(c).slice(0, 80)).toBe(c.status);
      expect(res.text).not.toContain('You are unsubscribed');
      expect(res.headers.get('content-type')).toContain('text/html');
    }
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('invariant 2: when the opt-out cannot be stored, the recipient is not told it was', async () => {
    const mailed = await seedMailedAddress('unstorable@example.test');
    await db().execute(sql`create function refuse_test_suppression() returns trigger as $$
      begin if lower(new.email) = 'unstorable@example.test' then raise exception 'disk full'; end if; return new; end $$ language plpgsql`);
    await db().execute(sql`create trigger refuse_test_suppression before insert on suppressions for each row execute function refuse_test_suppression()`);
    try {
      const res = await oneClick(mailed.path);
      expect(res.status).toBe(500);
      expect(res.text).toContain('not</strong> saved');
      expect(res.text).not.toContain('You are unsubscribed');
      // All or nothing: no consent or audit row without the suppression.
      expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in']);
    } finally {
      await db().execute(sql`drop trigger refuse_test_suppression on suppressions`);
      await db().execute(sql`drop function refuse_test_suppression()`);
    }
    // Once storage works again, the same link works (mail providers retry a failed one-click).
    expect((await oneClick(mailed.path)).status).toBe(200);
    // The answer came after the commit: the row is there as soon as the response is.
    expect(await entriesOf(owner.workspaceId, 'unstorable@example.test')).toHaveLength(1);
  });
});

describe('after opting out (P-08, P-11)', () => {
  it('P-08 1:1 mail to an address that opted out is refused with 409 recipient_suppressed, whatever its case', async () => {
    const mailbox = await connectedMailbox(app, owner.token, 'sender@acme-outdoor.test');
    app.sandbox.control.createMailbox({ email: 'optout.person@example.test' });
    const mailed = await seedMailedAddress('optout.person@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);

    const sends = app.sandbox.control.callCounts({ successfulOnly: true }).send;
    for (const to of ['optout.person@example.test', 'OptOut.Person@Example.test']) {
      const res = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: mailbox.id, to, subject: 'Still there?', text: 'x' } });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('recipient_suppressed');
    }
    expect(app.sandbox.control.callCounts({ successfulOnly: true }).send).toBe(sends);
    expect(app.sandbox.control.listMessages('optout.person@example.test')).toEqual([]);
  });

  it('P-11 the contact\'s consent history shows the opt-out, after the opt-in it replaces', async () => {
    const mailed = await seedMailedAddress('history@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);
    const res = await app.api('GET', `/api/contacts/${mailed.contactId}/consents`, { token: owner.token });
    expect(res.body.consents).toMatchObject([
      { status: 'opted_out', source: 'unsubscribe-link', actor: 'recipient', policyVersion: app.config.policyVersion },
      { status: 'opted_in', source: 'signup-form' },
    ]);
    const contact = await app.api('GET', `/api/contacts/${mailed.contactId}`, { token: owner.token });
    expect(contact.body.consent).toMatchObject({ status: 'opted_out', source: 'unsubscribe-link' });
  });
});

describe('preference center (P-09, P-11)', () => {
  const save = (path: string, fields: [string, string][]) =>
    app.api('POST', path, { body: new URLSearchParams(fields).toString(), headers: FORM });

  it('shows the workspace\'s topics with this address\'s state, and GET changes nothing', async () => {
    await seedCampaign(owner.workspaceId, 'Product news');
    await seedCampaign(owner.workspaceId, null);
    const mailed = await seedMailedAddress('prefs.view@example.test');
    const before = await snapshotCounts(db());
    const page = await app.api('GET', mailed.prefs);
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.text).toContain('p•••@example.test');
    expect(page.text).not.toContain('prefs.view');
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="Newsletter" checked>');
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="Product news" checked>');
    expect(page.text).toContain('value="unsubscribe-all"');
    expect(page.text).not.toContain('<script');
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('P-11 a topic opt-out suppresses only that topic, and the recipient can undo it there', async () => {
    const mailed = await seedMailedAddress('topics@example.test');
    const repo = createSuppressionRepo(db(), createAddressHasher(app.config.privacy.suppressionHashKey));
    const res = await save(mailed.prefs, [
      ['topics', 'Newsletter'],
      ['topics', 'Product news'],
      ['subscribed', 'Product news'],
      ['action', 'save'],
    ]);
    expect(res.status).toBe(200);
    expect(res.text).toContain('Your choices are saved');
    expect(res.text).toContain('<input type="checkbox" name="subscribed" value="Newsletter">');
    expect(await entriesOf(owner.workspaceId, 'topics@example.test')).toMatchObject([{ scope: 'topic:Newsletter', reason: 'unsubscribe', source: 'preference-center' }]);
    const email = ['topics@example.test'];
    expect(await repo.findSuppressed(owner.workspaceId, email, 'Newsletter')).toEqual(new Set(email));
    expect(await repo.findSuppressed(owner.workspaceId, email, 'Product news')).toEqual(new Set());
    expect(await repo.findSuppressed(owner.workspaceId, email)).toEqual(new Set());
    // A topic choice is not a withdrawal of consent as a whole.
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in']);

    const undo = await save(mailed.prefs, [
      ['topics', 'Newsletter'],
      ['topics', 'Product news'],
      ['subscribed', 'Newsletter'],
      ['subscribed', 'Product news'],
    ]);
    expect(undo.status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'topics@example.test')).toEqual([]);
    const audit = (await auditOf(owner.workspaceId)).filter((a) => (a.detail as { entry?: { addressHash?: string } }).entry?.addressHash === createAddressHasher(app.config.privacy.suppressionHashKey)('topics@example.test'));
    expect(audit).toMatchObject([{ action: 'suppression.removed', actor: `recipient:${mailed.recipientId}` }]);
  });

  it('P-11 unsubscribe from everything, then subscribe again: both recorded as consent, both audited', async () => {
    const mailed = await seedMailedAddress('everything@example.test');
    const out = await save(mailed.prefs, [['action', 'unsubscribe-all']]);
    expect(out.status).toBe(200);
    expect(out.text).toContain('You are unsubscribed from all email');
    // Counted for the campaign whose mail led here, like the one-click link.
    expect(await entriesOf(owner.workspaceId, 'everything@example.test')).toMatchObject([{ scope: 'all', reason: 'unsubscribe', source: `campaign:${mailed.campaignId}` }]);

    const back = await save(mailed.prefs, [['action', 'resubscribe-all']]);
    expect(back.status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'everything@example.test')).toEqual([]);
    expect((await consentsOf(mailed.contactId!)).map((c) => [c.status, c.source, c.actor])).toEqual([
      ['opted_in', 'signup-form', `user:${owner.userId}`],
      ['opted_out', 'preference-center', 'recipient'],
      ['opted_in', 'preference-center', 'recipient'],
    ]);
    const actions = (await auditOf(owner.workspaceId))
      .filter((a) => a.actor === `recipient:${mailed.recipientId}`)
      .map((a) => a.action)
      .sort();
    expect(actions).toEqual(['suppression.added', 'suppression.removed']);
  });

  it('re-subscribing is refused for entries the recipient did not make (bounce, complaint): nothing changes', async () => {
    const mailed = await seedMailedAddress('bounced@example.test');
    await db().insert(suppressions).values({ workspaceId: owner.workspaceId, email: 'bounced@example.test', reason: 'bounce', source: 'dsn' });
    const complaint = await app.api('POST', '/api/suppressions', {
      token: owner.token,
      json: { email: 'bounced@example.test', reason: 'complaint', scope: 'topic:Newsletter' },
    });
    expect(complaint.status).toBe(201);

    const page = await app.api('GET', mailed.prefs);
    expect(page.text).toContain('could not be delivered');
    expect(page.text).not.toContain('value="resubscribe-all"');
    expect(page.text).toContain('value="Newsletter" disabled aria-describedby="topic-0-why">');

    const before = await snapshotCounts(db());
    const again = await save(mailed.prefs, [['action', 'resubscribe-all']]);
    expect(again.status).toBe(409);
    expect(again.text).toContain('Nothing was changed');
    const topic = await save(mailed.prefs, [
      ['topics', 'Newsletter'],
      ['subscribed', 'Newsletter'],
    ]);
    expect(topic.status).toBe(409);
    expect(await snapshotCounts(db())).toEqual(before);
    expect(await entriesOf(owner.workspaceId, 'bounced@example.test')).toHaveLength(2);
  });

  it('a one-click opt-out after a bounce still records the recipient\'s withdrawal (P-11), without a second entry', async () => {
    const mailed = await seedMailedAddress('bounced.then.out@example.test');
    await db().insert(suppressions).values({ workspaceId: owner.workspaceId, email: 'bounced.then.out@example.test', reason: 'bounce', source: 'dsn' });
    expect((await oneClick(mailed.path)).status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'bounced.then.out@example.test')).toMatchObject([{ reason: 'bounce' }]);
    expect((await consentsOf(mailed.contactId!)).map((c) => c.status)).toEqual(['opted_in', 'opted_out']);
  });

  it('a form naming unknown topics or fields → 400 page and nothing changes', async () => {
    const mailed = await seedMailedAddress('strict.prefs@example.test');
    const before = await snapshotCounts(db());
    const cases: [string, string][][] = [
      [['topics', 'No such topic']],
      [['topics', 'Newsletter'], ['subscribed', 'Product news']],
      [['topics', 'Newsletter'], ['extra', '1']],
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
    const campaignId = await seedCampaign(owner.workspaceId, 'Short-lived');
    const recipientId = await seedRecipient(owner.workspaceId, 'short.lived@example.test');
    const prefs = urls().preferences(recipientId, campaignId);
    await save(prefs, [['topics', 'Short-lived']]);
    await db().delete(campaigns).where(eq(campaigns.id, campaignId));
    const page = await app.api('GET', prefs);
    expect(page.text).toContain('<input type="checkbox" name="subscribed" value="Short-lived">');
    const undo = await save(prefs, [
      ['topics', 'Short-lived'],
      ['subscribed', 'Short-lived'],
    ]);
    expect(undo.status).toBe(200);
    expect(await entriesOf(owner.workspaceId, 'short.lived@example.test')).toEqual([]);
  });
});
