import { eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { campaigns } from '../../src/db/schema.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { createSuppressionRepo } from '../../src/suppression/suppression.repo.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { expectNoRedirectNoCookie, FORM, ONE_CLICK, useOptOutApp } from '../helpers/opt-out.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { startTestApp, TEST_ENV } from '../helpers/test-app.js';

/*
 * The recipient's side of opting out, by the link in the mail: RFC 8058 one-click, the
 * unsubscribe page and its button, bad tokens, and what the opt-out then stops (P-08, P-09,
 * P-11; invariants 2, 7, 9). The preference center: opt-out-preference-center.test.ts.
 */

const ctx = useOptOutApp();
const { db, codec, urls, seedRecipient, seedMailedAddress, oneClick, entriesOf, auditOf, consentsOf } = ctx;

describe('RFC 8058 one-click unsubscribe (P-09)', () => {
  it('P-09 a one-click POST (form-urlencoded) suppresses the address workspace-wide, answers 200 with no redirect and no cookie', async () => {
    const mailed = await seedMailedAddress('alice@example.test');
    const res = await oneClick(mailed.path);
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toContain('You are unsubscribed');
    expect(res.text).toContain(`href="${mailed.prefs}"`);

    const [entry, ...more] = await entriesOf(ctx.owner.workspaceId, 'alice@example.test');
    expect(more).toEqual([]);
    expect(entry).toMatchObject({ scope: 'all', reason: 'unsubscribe', source: `campaign:${mailed.campaignId}`, createdBy: null });
    const audit = (await auditOf(ctx.owner.workspaceId)).filter((a) => a.subjectId === entry!.id);
    expect(audit).toMatchObject([{ actor: `recipient:${mailed.recipientId}`, action: 'suppression.added', subjectType: 'suppression' }]);
  });

  it('P-09 a one-click POST as multipart/form-data works the same', async () => {
    const mailed = await seedMailedAddress('bruno@example.test');
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    const res = await ctx.app.api('POST', mailed.path, { body: form });
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(await entriesOf(ctx.owner.workspaceId, 'bruno@example.test')).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
  });

  it('P-09 a one-click multipart body that RFC 7578/2046/2183 allow in any of its unusual forms opts out (.NET\'s unquoted name, a preamble, an epilogue, padding, Form-Data)', async () => {
    // undici's FormData parser refused each of these: a 400 and the opt-out lost (an attacker's finding; undici#4660).
    const part = (disposition: string) => `Content-Disposition: ${disposition}\r\n\r\nOne-Click\r\n`;
    const net = '4b39ed14-752b-480a-9846-fc0019132d15';
    for (const [address, body, contentType] of [
      // What .NET's `new MultipartFormDataContent { { new StringContent("One-Click"), "List-Unsubscribe" } }` sends.
      ['dotnet@example.test', `--${net}\r\nContent-Type: text/plain; charset=utf-8\r\n${part('form-data; name=List-Unsubscribe')}--${net}--\r\n`, `multipart/form-data; boundary="${net}"`],
      ['preamble@example.test', `This is a multi-part message in MIME format.\r\n--b1\r\n${part('form-data; name="List-Unsubscribe"')}--b1--\r\n`, 'multipart/form-data; boundary=b1'],
      ['nospace@example.test', `--b2\r\n${part('form-data;name="List-Unsubscribe"')}--b2--\r\n`, 'multipart/form-data; boundary=b2'],
      ['epilogue@example.test', `--b3\r\n${part('form-data; name="List-Unsubscribe"')}--b3--\r\nan epilogue, ignored`, 'multipart/form-data; boundary=b3'],
      ['padding@example.test', `--b4  \r\n${part('Form-Data; name="List-Unsubscribe"')}--b4--`, 'multipart/form-data; boundary=b4'],
    ] as const) {
      const mailed = await seedMailedAddress(address);
      const res = await ctx.app.api('POST', mailed.path, { body, headers: { 'content-type': contentType } });
      expect(res.status, `${address}: ${res.text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 160)}`).toBe(200);
      expect(await entriesOf(ctx.owner.workspaceId, address)).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
    }
  });

  it('P-09 a link with punctuation a mail client took in at its end (a sentence\'s full stop, a closing bracket) still works', async () => {
    const mailed = await seedMailedAddress('trailing@example.test');
    for (const suffix of ['.', '>', ').', '%3E']) {
      const page = await ctx.app.api('GET', `${mailed.path}${suffix}`);
      expect(page.status, suffix).toBe(200);
      expect(page.text).toContain('Unsubscribe');
    }
    expect((await oneClick(`${mailed.path}.`)).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'trailing@example.test')).toHaveLength(1);
    expect((await ctx.app.api('GET', `${mailed.prefs},`)).status).toBe(200);
  });

  it('P-09 a one-click body that ends in a line break (some senders add one) works the same', async () => {
    const mailed = await seedMailedAddress('crlf@example.test');
    const res = await ctx.app.api('POST', mailed.path, { body: 'List-Unsubscribe=One-Click\r\n', headers: FORM });
    expect(res.status, res.text.slice(0, 200)).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'crlf@example.test')).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
  });

  it('P-09 a token without a campaign records source unsubscribe-link', async () => {
    const recipientId = await seedRecipient(ctx.owner.workspaceId, 'nocampaign@example.test');
    const res = await oneClick(urls().unsubscribe(recipientId));
    expect(res.status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'nocampaign@example.test')).toMatchObject([{ scope: 'all', reason: 'unsubscribe', source: 'unsubscribe-link' }]);
  });

  it('GET never unsubscribes, however often it is fetched (scanners prefetch links), and shows one no-JS button', async () => {
    const mailed = await seedMailedAddress('carla.scanned@example.test');
    const before = await snapshotCounts(db());
    for (let i = 0; i < 5; i++) {
      const page = await ctx.app.api('GET', mailed.path);
      expect(page.status).toBe(200);
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.text).toContain('Acme Outdoor');
      expect(page.text).toContain('c•••@example.test');
      expect(page.text).not.toContain('carla.scanned');
      expect(page.text).toContain(`<form method="post" action="${mailed.path}">`);
      expect(page.text).not.toContain('<script');
    }
    await ctx.app.api('HEAD', mailed.path);
    expect(await snapshotCounts(db())).toEqual(before);
    expect(await entriesOf(ctx.owner.workspaceId, 'carla.scanned@example.test')).toEqual([]);
  });

  it('P-09 the page\'s button unsubscribes and confirms, with a link to the preference center', async () => {
    const mailed = await seedMailedAddress('dora@example.test');
    const res = await ctx.app.api('POST', mailed.path, { body: 'confirm=yes', headers: FORM });
    expect(res.status).toBe(200);
    expectNoRedirectNoCookie(res);
    expect(res.text).toContain('You are unsubscribed');
    expect(res.text).toContain(`<a href="${mailed.prefs}">`);
    expect(await entriesOf(ctx.owner.workspaceId, 'dora@example.test')).toHaveLength(1);
    // Coming back to the link later says so, and still changes nothing.
    const again = await ctx.app.api('GET', mailed.path);
    expect(again.text).toContain('no longer sends email to d•••@example.test');
  });

  it('a replayed one-click is harmless: same 200, one entry, one audit row, one consent record', async () => {
    const mailed = await seedMailedAddress('eve@example.test');
    const replies = await Promise.all([oneClick(mailed.path), oneClick(mailed.path)]);
    replies.push(await oneClick(mailed.path), await ctx.app.api('POST', mailed.path, { body: 'confirm=yes', headers: FORM }));
    for (const reply of replies) expect(reply.status).toBe(200);
    const entries = await entriesOf(ctx.owner.workspaceId, 'eve@example.test');
    expect(entries).toHaveLength(1);
    expect((await auditOf(ctx.owner.workspaceId)).filter((a) => a.subjectId === entries[0]!.id)).toHaveLength(1);
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
        const post = await ctx.app.api('POST', `${prefix}${encodeURIComponent(t)}`, { body: prefix === '/u/' ? ONE_CLICK : 'action=unsubscribe-all', headers: FORM });
        expect(post.status, `${prefix}${t}`).toBe(404);
        expect(post.text).toContain('This link is not valid');
        expect(post.text).not.toContain('frank');
        const get = await ctx.app.api('GET', `${prefix}${encodeURIComponent(t)}`);
        expect(get.status).toBe(404);
      }
    }
    expect(await snapshotCounts(db())).toEqual(before);
  });

  it('invariant 7: a token for workspace A\'s recipient never touches workspace B', async () => {
    const email = 'shared.person@example.test';
    const inA = await seedMailedAddress(email);
    const inB = await seedMailedAddress(email, { workspace: ctx.other });
    // A (validly signed) token pairing A's recipient with B's campaign is refused outright.
    const mixed = urls().unsubscribe(inA.recipientId, inB.campaignId);
    const before = await snapshotCounts(db());
    expect((await oneClick(mixed)).status).toBe(404);
    expect((await ctx.app.api('POST', mixed.replace('/u/', '/p/'), { body: 'action=unsubscribe-all', headers: FORM })).status).toBe(404);
    expect(await snapshotCounts(db())).toEqual(before);

    // A's own token suppresses in A only: B may still mail the person, and B's records are untouched.
    expect((await oneClick(inA.path)).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, email)).toHaveLength(1);
    expect(await entriesOf(ctx.other.workspaceId, email)).toEqual([]);
    expect((await consentsOf(inB.contactId!)).map((c) => c.status)).toEqual(['opted_in']);
    expect(await createSuppressionRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey)).findSuppressed(ctx.other.workspaceId, [email])).toEqual(new Set());
    // B's page names B, not A.
    expect((await ctx.app.api('GET', inB.path)).text).toContain('Other Co');
  });

  it('keeps working after the campaign and the contact are deleted', async () => {
    const mailed = await seedMailedAddress('gone@example.test');
    await db().delete(campaigns).where(eq(campaigns.id, mailed.campaignId));
    expect((await ctx.app.api('DELETE', `/api/contacts/${mailed.contactId}`, { token: ctx.owner.token })).status).toBe(204);
    expect((await ctx.app.api('GET', mailed.path)).status).toBe(200);
    const res = await oneClick(mailed.path);
    expect(res.status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'gone@example.test')).toMatchObject([{ scope: 'all', source: `campaign:${mailed.campaignId}` }]);
  });

  it('P-09 links keep working after the tracking secret is rotated', async () => {
    const mailed = await seedMailedAddress('rotated@example.test');
    const rotated = await startTestApp({
      database: ctx.app.database,
      env: { TRACKING_SECRET: `${TEST_ENV.TRACKING_SECRET},v2:a-newer-tracking-secret-that-is-long-enough-987` },
    });
    try {
      const newToken = createTokenCodec(rotated.config.trackingSecrets).encode({ kind: 'unsubscribe', recipientId: mailed.recipientId });
      expect(newToken).not.toBe(mailed.path.slice(3));
      const res = await rotated.api('POST', mailed.path, { body: ONE_CLICK, headers: FORM });
      expect(res.status).toBe(200);
      expect(await entriesOf(ctx.owner.workspaceId, 'rotated@example.test')).toHaveLength(1);
    } finally {
      await rotated.close();
    }
  });

  it('P-09 a one-click POST sent as text/plain, or with no content type, still opts out', async () => {
    // fetch names a string body text/plain itself; bytes go with no content type at all.
    for (const [address, body] of [
      ['plain@example.test', `${ONE_CLICK}\r\n`],
      ['untyped@example.test', new TextEncoder().encode(ONE_CLICK)],
    ] as const) {
      const mailed = await seedMailedAddress(address);
      const res = await ctx.app.api('POST', mailed.path, { body });
      expect(res.status, address).toBe(200);
      expect(res.text).toContain('You are unsubscribed');
      expect(await entriesOf(ctx.owner.workspaceId, address)).toHaveLength(1);
    }
  });

  it('P-09 a one-click in UTF-16, US-ASCII or windows-1252, or with a stray control character in another field (any encoding), still opts out', async () => {
    const utf16le = (text: string) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const utf16beNoBom = (text: string) => Buffer.from(text, 'utf16le').swap16();
    for (const [address, body, contentType] of [
      ['bom16@example.test', utf16le(`${ONE_CLICK}\r\n`), 'text/plain'],
      ['be16@example.test', utf16beNoBom(ONE_CLICK), 'text/plain; charset=UTF-16BE'],
      ['stray@example.test', Buffer.from(`note=a\u0000b\r\n${ONE_CLICK}\r\n`), 'text/plain'],
      // The same stray field in the two encodings RFC 8058 names (an attacker's finding: 400, the opt-out lost).
      ['stray-form@example.test', Buffer.from(`${ONE_CLICK}&utm=%00`), 'application/x-www-form-urlencoded'],
      ['stray-form-name@example.test', Buffer.from(`${ONE_CLICK}&%00=x`), 'application/x-www-form-urlencoded; charset=us-ascii'],
      [
        'stray-multipart@example.test',
        Buffer.from(`--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--XyZ\r\nContent-Disposition: form-data; name="x"\r\n\r\na\u0000b\r\n--XyZ--\r\n`),
        'multipart/form-data; boundary=XyZ',
      ],
      // A form in a charset the app's own form parser does not read (it answered 415, losing the opt-out).
      ['ascii@example.test', Buffer.from(ONE_CLICK), 'application/x-www-form-urlencoded; charset=us-ascii'],
      ['cp1252@example.test', Buffer.from(ONE_CLICK), 'application/x-www-form-urlencoded; charset=windows-1252'],
      ['form16@example.test', utf16le(ONE_CLICK), 'application/x-www-form-urlencoded; charset=utf-16'],
    ] as const) {
      const mailed = await seedMailedAddress(address);
      const res = await ctx.app.api('POST', mailed.path, { body: new Uint8Array(body), headers: { 'content-type': contentType } });
      expect(res.status, address).toBe(200);
      expect(await entriesOf(ctx.owner.workspaceId, address)).toHaveLength(1);
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
      { body: 'List-Unsubscribe=Maybe\r\n', headers: { 'content-type': 'text/plain' }, status: 400 },
      { body: ONE_CLICK, headers: { 'content-type': 'text/csv' }, status: 415 },
      { body: ONE_CLICK, headers: { 'content-type': 'text/plain; charset=x-no-such-charset' }, status: 415 },
      { body: 'List-Unsubscribe=One-\u0000Click', headers: { 'content-type': 'text/plain' }, status: 400 },
      { body: `List-Unsubscribe=${'a'.repeat(70_000)}`, headers: { 'content-type': 'text/plain' }, status: 413 },
      { body: '--x\r\nbroken', headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 400 },
      { body: ONE_CLICK, headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 400 },
      { body: '--x\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n\r\nOne-Click\r\n--x--', headers: { 'content-type': 'multipart/form-data' }, status: 400 },
      { body: '--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n'.repeat(1001) + '--x--', headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 413 },
      { body: `--x\r\nContent-Disposition: form-data; name="pad"\r\n\r\n${'a'.repeat(70_000)}\r\n--x--\r\n`, headers: { 'content-type': 'multipart/form-data; boundary=x' }, status: 413 },
    ];
    for (const c of cases) {
      const res = await ctx.app.api('POST', mailed.path, { body: c.body, headers: c.headers });
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
    expect(await entriesOf(ctx.owner.workspaceId, 'unstorable@example.test')).toHaveLength(1);
  });
});

describe('after opting out (P-08, P-11)', () => {
  it("P-11 a CSV import saying opted_in does not undo a recipient's own opt-out", async () => {
    const importCsv = (csv: string) => ctx.app.api('POST', '/api/contacts/import', { token: ctx.owner.token, body: csv, headers: { 'content-type': 'text/csv' } });
    const latest = async (contactId: string) => (await consentsOf(contactId)).at(-1)!;

    const mailed = await seedMailedAddress('kept.out@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);
    const report = await importCsv('email,consent\nkept.out@example.test,opted_in\n');
    expect(report.body).toMatchObject({ consents: 0, optOutsKept: 1, failed: 0 });
    expect(await latest(mailed.contactId!)).toMatchObject({ status: 'opted_out', actor: 'recipient' });

    // An opt-out recorded by a member (not the recipient) is the CRM's own record: a later file may change it.
    const member = await seedMailedAddress('crm.out@example.test');
    await ctx.app.api('POST', `/api/contacts/${member.contactId}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
    expect((await importCsv('email,consent\ncrm.out@example.test,opted_in\n')).body).toMatchObject({ consents: 1, optOutsKept: 0 });
  });

  it('P-08 1:1 mail to an address that opted out is refused with 409 recipient_suppressed, whatever its case', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'sender@acme-outdoor.test');
    ctx.app.sandbox.control.createMailbox({ email: 'optout.person@example.test' });
    const mailed = await seedMailedAddress('optout.person@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);

    const sends = ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send;
    for (const to of ['optout.person@example.test', 'OptOut.Person@Example.test']) {
      const res = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to, subject: 'Still there?', text: 'x' } });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('recipient_suppressed');
    }
    expect(ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send).toBe(sends);
    expect(ctx.app.sandbox.control.listMessages('optout.person@example.test')).toEqual([]);
  });

  it('P-11 the contact\'s consent history shows the opt-out, after the opt-in it replaces', async () => {
    const mailed = await seedMailedAddress('history@example.test');
    expect((await oneClick(mailed.path)).status).toBe(200);
    const res = await ctx.app.api('GET', `/api/contacts/${mailed.contactId}/consents`, { token: ctx.owner.token });
    expect(res.body.consents).toMatchObject([
      { status: 'opted_out', source: 'unsubscribe-link', actor: 'recipient', policyVersion: ctx.app.config.policyVersion },
      { status: 'opted_in', source: 'signup-form' },
    ]);
    const contact = await ctx.app.api('GET', `/api/contacts/${mailed.contactId}`, { token: ctx.owner.token });
    expect(contact.body.consent).toMatchObject({ status: 'opted_out', source: 'unsubscribe-link' });
  });
});
