import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { FORM, useOptOutApp } from '../helpers/opt-out.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { signUpInBrowser } from '../helpers/web-client.js';

/*
 * A form field named `__proto__`: a JSON body's key is answered with 400 `validation_failed`
 * (http/text.ts), but forms lost it without a word — the web app's multipart uploads built
 * `req.body` as a plain object, where `body.__proto__ = text` does nothing, and the urlencoded
 * parser (qs) drops such a key itself, so the preference center saved a form carrying one. Now
 * every form reader refuses it the same way, before anything is changed. The one-click opt-out stays lenient (RFC 8058: only
 * `List-Unsubscribe=One-Click` matters there): the field is skipped and the opt-out goes through.
 */

const ctx = useOptOutApp();
const { db, seedMailedAddress, entriesOf } = ctx;

const multipart = (fields: [string, string][]) => {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  return form;
};

describe('a form field named __proto__', () => {
  it('the preference center, multipart or urlencoded: 400 validation_failed naming it, nothing saved (as in a JSON body)', async () => {
    const mailed = await seedMailedAddress('proto-prefs@example.test');
    const before = await snapshotCounts(db());
    const fields: [string, string][] = [['__proto__', 'x'], ['action', 'unsubscribe-all']];
    for (const body of [multipart(fields), new URLSearchParams(fields).toString(), '%5F%5Fproto%5F%5F=x&action=unsubscribe-all']) {
      const res = await ctx.app.api('POST', mailed.prefs, typeof body === 'string' ? { body, headers: FORM } : { body });
      expect([typeof body, res.status]).toEqual([typeof body, 400]);
      expect(res.text).toContain('__proto__ is not accepted as a name');
    }
    const raw = await ctx.app.api('POST', mailed.prefs, {
      body: '--b\r\nContent-Disposition: form-data; name=__proto__\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name="action"\r\n\r\nunsubscribe-all\r\n--b--\r\n',
      headers: { 'content-type': 'multipart/form-data; boundary=b', accept: 'application/json' },
    });
    expect(raw.status).toBe(400);
    expect(await entriesOf(ctx.owner.workspaceId, 'proto-prefs@example.test')).toEqual([]);
    expect(await snapshotCounts(db())).toEqual(before);
    // `constructor` is an ordinary name (an own key, as in JSON): this form's own rule refuses it as a field it does not have.
    const ordinary = await ctx.app.api('POST', mailed.prefs, { body: multipart([['constructor', 'x'], ['action', 'unsubscribe-all']]) });
    expect(ordinary.text).toContain('constructor: is not a field of this form');
    // The form without it saves.
    expect((await ctx.app.api('POST', mailed.prefs, { body: multipart([['action', 'unsubscribe-all']]) })).status).toBe(200);
    expect(await entriesOf(ctx.owner.workspaceId, 'proto-prefs@example.test')).toMatchObject([{ scope: 'all' }]);
  });

  it('urlencoded `[__proto__]`: the parser (qs) strips one pair of wrapping brackets and drops it as `__proto__`, so it is refused alike', async () => {
    const mailed = await seedMailedAddress('proto-brackets@example.test');
    const before = await snapshotCounts(db());
    for (const body of ['[__proto__]=x&action=unsubscribe-all', '%5B__proto__%5D=x&action=unsubscribe-all', '%5B%5F%5Fproto%5F%5F%5D=x&action=unsubscribe-all']) {
      const res = await ctx.app.api('POST', mailed.prefs, { body, headers: FORM });
      expect([body, res.status]).toEqual([body, 400]);
      expect(res.text).toContain('__proto__ is not accepted as a name');
    }
    expect(await entriesOf(ctx.owner.workspaceId, 'proto-brackets@example.test')).toEqual([]);
    expect(await snapshotCounts(db())).toEqual(before);
    // Only one pair is stripped: `[[__proto__]]` is kept as `[__proto__]`, an ordinary name this form does not have.
    const nested = await ctx.app.api('POST', mailed.prefs, { body: '[[__proto__]]=x&action=unsubscribe-all', headers: FORM });
    expect(nested.text).not.toContain('__proto__ is not accepted as a name');
  });

  it('one-click (RFC 8058), multipart or urlencoded: the field is skipped and the opt-out goes through', async () => {
    const fields: [string, string][] = [['__proto__', 'x'], ['List-Unsubscribe', 'One-Click']];
    for (const [address, body] of [['proto-oneclick@example.test', multipart(fields)], ['proto-oneclick-form@example.test', new URLSearchParams(fields).toString()]] as const) {
      const mailed = await seedMailedAddress(address);
      const res = await ctx.app.api('POST', mailed.path, typeof body === 'string' ? { body, headers: FORM } : { body });
      expect(res.status).toBe(200);
      expect(await entriesOf(ctx.owner.workspaceId, address)).toMatchObject([{ scope: 'all' }]);
    }
  });

  it('the web app, a multipart form (the CSV import) or a urlencoded one: 400 validation_failed naming it, nothing added', async () => {
    const { browser } = await signUpInBrowser(ctx.app);
    await browser.get('/app/contacts/import');
    const csv = 'email\nproto-import@example.test\n';
    const res = await browser.postMultipart('/app/contacts/import', Object.fromEntries([['csv', csv], ['map0', 'email'], ['__proto__', 'x']]));
    expect(res.status).toBe(400);
    expect(res.text).toContain('<code>validation_failed</code>');
    expect(res.text).toContain('__proto__ is not accepted as a name');
    const found = rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from contacts where email = 'proto-import@example.test'`));
    expect(Number(found[0]!.n)).toBe(0);
    // A urlencoded form of the web app (a contact) is refused alike, and adds nothing.
    await browser.get('/app/contacts/new');
    const contact = await browser.request('POST', '/app/contacts', new URLSearchParams([['_csrf', browser.csrfToken()], ['email', 'proto-form@example.test'], ['__proto__', 'x']]));
    expect(contact.status).toBe(400);
    expect(contact.text).toContain('__proto__ is not accepted as a name');
    const added = rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from contacts where email = 'proto-form@example.test'`));
    expect(Number(added[0]!.n)).toBe(0);
    // The same file without it imports.
    await browser.get('/app/contacts/import');
    const done = await browser.postMultipart('/app/contacts/import', { csv, map0: 'email' });
    expect(done.status).toBe(200);
    expect(done.text).toContain('Import finished');
  }, 60_000);
});
