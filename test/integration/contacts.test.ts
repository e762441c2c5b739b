import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { countRows, snapshotCounts } from '../helpers/test-db.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();

const create = (json: unknown, token = ctx.owner.token) => ctx.app.api('POST', '/api/contacts', { token, json });
const importCsv = (csv: string, token = ctx.owner.token) =>
  ctx.app.api('POST', '/api/contacts/import', { token, body: csv, headers: { 'content-type': 'text/csv' } });

describe('contacts CRUD', () => {
  it('creates a contact with a normalized address and reads it back with its timeline', async () => {
    const res = await create({ email: '  Grace.Hopper@Navy.MIL ', firstName: 'Grace', attributes: { rank: 'Rear Admiral', ships: 3 } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ email: 'Grace.Hopper@navy.mil', firstName: 'Grace', lastName: null, attributes: { rank: 'Rear Admiral', ships: 3 }, consent: null });
    const got = await ctx.app.api('GET', `/api/contacts/${res.body.id}`, { token: ctx.owner.token });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: res.body.id, email: 'Grace.Hopper@navy.mil', timeline: [] });
  });

  it('the address is unique per workspace, ignoring case; another workspace may hold it too', async () => {
    await create({ email: 'unique@example.com' });
    const before = await countRows(ctx.app.database.db, 'contacts');
    const dup = await create({ email: 'UNIQUE@Example.com' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('contact_exists');
    expect(await countRows(ctx.app.database.db, 'contacts')).toBe(before);

    const other = await signUp(ctx.app);
    expect((await create({ email: 'unique@example.com' }, other.token)).status).toBe(201);
  });

  it('PATCH merges attributes (null removes), renames, and refuses a taken address', async () => {
    const contact = (await create({ email: 'patch@example.com', attributes: { plan: 'free', city: 'Oslo' } })).body;
    await create({ email: 'taken@example.com' });
    const patched = await ctx.app.api('PATCH', `/api/contacts/${contact.id}`, {
      token: ctx.owner.token,
      json: { lastName: 'Lovelace', attributes: { plan: 'pro', city: null, seats: 5 } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ lastName: 'Lovelace', attributes: { plan: 'pro', seats: 5 } });
    expect(patched.body.attributes).not.toHaveProperty('city');

    const clash = await ctx.app.api('PATCH', `/api/contacts/${contact.id}`, { token: ctx.owner.token, json: { email: 'Taken@EXAMPLE.com' } });
    expect(clash.status).toBe(409);
    const unchanged = await ctx.app.api('GET', `/api/contacts/${contact.id}`, { token: ctx.owner.token });
    expect(unchanged.body.email).toBe('patch@example.com');

    const empty = await ctx.app.api('PATCH', `/api/contacts/${contact.id}`, { token: ctx.owner.token, json: {} });
    expect(empty.status).toBe(400);
    const unknownField = await ctx.app.api('PATCH', `/api/contacts/${contact.id}`, { token: ctx.owner.token, json: { workspaceId: ctx.owner.workspaceId } });
    expect(unknownField.status).toBe(400);
  });

  it('a contact holds at most 100 attributes, however many patches add them; a patch removing some makes room', async () => {
    const full = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`a${i}`, i]));
    const contact = (await create({ email: 'many.attributes@example.com', attributes: full })).body;
    const patch = (attributes: Record<string, unknown>) => ctx.app.api('PATCH', `/api/contacts/${contact.id}`, { token: ctx.owner.token, json: { attributes } });
    const over = await patch({ more: 'x' });
    expect(over.status).toBe(400);
    expect(over.body.error.details).toEqual([expect.objectContaining({ field: 'attributes' })]);
    const stored = await ctx.app.api('GET', `/api/contacts/${contact.id}`, { token: ctx.owner.token });
    expect(Object.keys(stored.body.attributes)).toHaveLength(100);
    const swapped = await patch({ a0: null, more: 'x' });
    expect(swapped.status).toBe(200);
    expect(Object.keys(swapped.body.attributes)).toHaveLength(100);
    expect(swapped.body.attributes.more).toBe('x');
    // A contact past the limit (an import merges attributes without this check) may still lose some.
    await ctx.app.database.db.execute(sql`update contacts set attributes = attributes || '{"x1":1,"x2":2}'::jsonb where id = ${contact.id}::uuid`);
    const trimmed = await patch({ x1: null });
    expect(trimmed.status, trimmed.text).toBe(200);
    expect(Object.keys(trimmed.body.attributes)).toHaveLength(101);
    expect((await patch({ x3: 'grows' })).status).toBe(400);
  });

  it('DELETE removes the contact and its consent history', async () => {
    const contact = (await create({ email: 'bye@example.com' })).body;
    await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'form' } });
    expect((await ctx.app.api('DELETE', `/api/contacts/${contact.id}`, { token: ctx.owner.token })).status).toBe(204);
    expect((await ctx.app.api('GET', `/api/contacts/${contact.id}`, { token: ctx.owner.token })).status).toBe(404);
    expect((await ctx.app.api('DELETE', `/api/contacts/${contact.id}`, { token: ctx.owner.token })).status).toBe(404);
  });

  it('a malformed id is a 404 like any id that names nothing', async () => {
    const res = await ctx.app.api('GET', '/api/contacts/not-a-uuid', { token: ctx.owner.token });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });

  it('lists newest first with a cursor, and searches', async () => {
    const team = await signUp(ctx.app);
    for (const n of [1, 2, 3, 4, 5]) await create({ email: `page${n}@example.com`, firstName: n === 3 ? 'Searchable' : undefined }, team.token);
    const first = await ctx.app.api('GET', '/api/contacts?limit=2', { token: team.token });
    expect(first.body.contacts.map((c: { email: string }) => c.email)).toEqual(['page5@example.com', 'page4@example.com']);
    const second = await ctx.app.api('GET', `/api/contacts?limit=2&cursor=${first.body.nextCursor}`, { token: team.token });
    expect(second.body.contacts.map((c: { email: string }) => c.email)).toEqual(['page3@example.com', 'page2@example.com']);
    const third = await ctx.app.api('GET', `/api/contacts?limit=2&cursor=${second.body.nextCursor}`, { token: team.token });
    expect(third.body.contacts.map((c: { email: string }) => c.email)).toEqual(['page1@example.com']);
    expect(third.body.nextCursor).toBeNull();

    const found = await ctx.app.api('GET', '/api/contacts?q=searchable', { token: team.token });
    expect(found.body.contacts.map((c: { email: string }) => c.email)).toEqual(['page3@example.com']);
    const wildcard = await ctx.app.api('GET', '/api/contacts?q=%25', { token: team.token });
    expect(wildcard.body.contacts).toEqual([]);

    const badCursor = await ctx.app.api('GET', '/api/contacts?cursor=garbage', { token: team.token });
    expect(badCursor.status).toBe(400);
    const badLimit = await ctx.app.api('GET', '/api/contacts?limit=0', { token: team.token });
    expect(badLimit.status).toBe(400);
  });
});

describe('consent records (P-10, P-11, P-18)', () => {
  it('P-11 consent history is append-only and the latest record is the contact\'s consent', async () => {
    const contact = (await create({ email: 'consent@example.com' })).body;
    const optIn = await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, {
      token: ctx.owner.token,
      json: { status: 'opted_in', source: 'webinar signup form' },
    });
    expect(optIn.status).toBe(201);
    expect(optIn.body).toMatchObject({ status: 'opted_in', source: 'webinar signup form', policyVersion: '2026-11-01', actor: `user:${ctx.owner.userId}` });

    await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call', policyVersion: '2026-12-01' } });
    const history = await ctx.app.api('GET', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token });
    expect(history.body.consents.map((c: { status: string }) => c.status)).toEqual(['opted_out', 'opted_in']);

    const got = await ctx.app.api('GET', `/api/contacts/${contact.id}`, { token: ctx.owner.token });
    expect(got.body.consent).toMatchObject({ status: 'opted_out', policyVersion: '2026-12-01' });
    expect(got.body.timeline.map((e: { type: string; status: string }) => `${e.type}:${e.status}`)).toEqual(['consent:opted_out', 'consent:opted_in']);
    const listed = await ctx.app.api('GET', '/api/contacts?q=consent%40example.com', { token: ctx.owner.token });
    expect(listed.body.contacts[0].consent.status).toBe('opted_out');
  });

  it('P-11 the database itself refuses to edit a consent record', async () => {
    const contact = (await create({ email: 'immutable@example.com' })).body;
    await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'form' } });
    await expect(ctx.app.database.db.execute(sql`update consents set status = 'opted_out' where contact_id = ${contact.id}::uuid`)).rejects.toThrow();
  });

  it('rejects an unknown status and changes nothing', async () => {
    const contact = (await create({ email: 'badconsent@example.com' })).body;
    const before = await snapshotCounts(ctx.app.database.db);
    const res = await ctx.app.api('POST', `/api/contacts/${contact.id}/consents`, { token: ctx.owner.token, json: { status: 'maybe', source: '' } });
    expect(res.status).toBe(400);
    expect(res.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(['source', 'status']);
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });
});

describe('CSV import', () => {
  it('imports rows, maps headers to fields and attributes, and reports each bad row by line', async () => {
    const team = await signUp(ctx.app);
    const csv = ['E-mail,First Name,last_name,Company Name', 'ada@Example.com,Ada,Lovelace,Analytical Engines', 'not-an-email,Bad,Row,', ',Missing,Email,', '"quoted@example.com","Q, Uoted",,"Acme, Inc."'].join('\n');
    const res = await importCsv(csv, team.token);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ rows: 4, created: 2, updated: 0, unchanged: 0, failed: 2 });
    expect(res.body.errors).toEqual([
      { line: 3, code: 'invalid_email', message: 'email is missing or not a valid address' },
      { line: 4, code: 'invalid_email', message: 'email is missing or not a valid address' },
    ]);
    const list = await ctx.app.api('GET', '/api/contacts', { token: team.token });
    const ada = list.body.contacts.find((c: { email: string }) => c.email === 'ada@example.com');
    expect(ada).toMatchObject({ firstName: 'Ada', lastName: 'Lovelace', attributes: { companyName: 'Analytical Engines' } });
    const quoted = list.body.contacts.find((c: { email: string }) => c.email === 'quoted@example.com');
    expect(quoted).toMatchObject({ firstName: 'Q, Uoted', attributes: { companyName: 'Acme, Inc.' } });
  });

  it('a header that makes no attribute name, or two headers making the same one, refuse the file (400) and import nothing', async () => {
    const team = await signUp(ctx.app);
    for (const [header, says] of [
      ['email,2024 Revenue', /"2024 Revenue" makes no attribute name/],
      [`email,${'x'.repeat(65)}`, /makes no attribute name/],
      ['email,Company Name,company_name', /"Company Name" and "company_name" are both the attribute companyName/],
    ] as const) {
      const res = await importCsv(`${header}
refused@example.com,a,b
`, team.token);
      expect([res.status, res.body.error.code]).toEqual([400, 'validation_failed']);
      expect(res.body.error.message).toMatch(says);
    }
    const list = await ctx.app.api('GET', '/api/contacts', { token: team.token });
    expect(list.body.contacts).toEqual([]);
    // The longest name the API takes is taken here too.
    const longest = await importCsv(`email,${'x'.repeat(64)}
kept@example.com,v
`, team.token);
    expect(longest.body).toMatchObject({ created: 1, failed: 0 });
  });

  it('is idempotent on the address: the same file twice leaves the same contacts', async () => {
    const team = await signUp(ctx.app);
    const csv = 'email,firstName,plan\nrepeat@example.com,Rita,pro\nREPEAT2@example.com,Rob,free\n';
    const first = await importCsv(csv, team.token);
    expect(first.body).toMatchObject({ created: 2, updated: 0, unchanged: 0 });
    const contactsAfterFirst = (await ctx.app.api('GET', '/api/contacts', { token: team.token })).body.contacts;
    const second = await importCsv(csv, team.token);
    expect(second.body).toMatchObject({ created: 0, updated: 0, unchanged: 2, failed: 0 });
    const contactsAfterSecond = (await ctx.app.api('GET', '/api/contacts', { token: team.token })).body.contacts;
    expect(contactsAfterSecond).toEqual(contactsAfterFirst);

    const changed = await importCsv('email,plan\nrepeat@EXAMPLE.com,enterprise\n', team.token);
    expect(changed.body).toMatchObject({ created: 0, updated: 1 });
    const rita = (await ctx.app.api('GET', '/api/contacts?q=repeat%40', { token: team.token })).body.contacts.find(
      (c: { firstName: string }) => c.firstName === 'Rita',
    );
    expect(rita.attributes).toEqual({ plan: 'enterprise' });
  });

  it('streams a large file in batches', async () => {
    const team = await signUp(ctx.app);
    const rows = Array.from({ length: 3000 }, (_, i) => `bulk${i}@example.com,Name${i},${i % 7}`);
    const res = await importCsv(`email,first name,score\n${rows.join('\n')}\n`, team.token);
    expect(res.body).toMatchObject({ rows: 3000, created: 3000, failed: 0 });
    const result = (await ctx.app.database.db.execute(
      sql`select count(*)::int as n from contacts where workspace_id = ${team.workspaceId}::uuid`,
    )) as unknown as { rows: { n: number }[] };
    expect(Number(result.rows[0]!.n)).toBe(3000);
  });

  it('a file without an email column, an empty file, or broken quoting is a 400 that imports nothing', async () => {
    const before = await snapshotCounts(ctx.app.database.db);
    for (const csv of ['name,company\nAda,Acme\n', '', 'email,name\n"unterminated@example.com,Ada\n']) {
      const res = await importCsv(csv);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });

  it('a file that breaks after many good rows imports none of them', async () => {
    const before = await snapshotCounts(ctx.app.database.db);
    const good = Array.from({ length: 1200 }, (_, i) => `fine${i}@example.com`).join('\n');
    const res = await importCsv(`email\n${good}\n"broken@example.com\n`);
    expect(res.status).toBe(400);
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });
});
