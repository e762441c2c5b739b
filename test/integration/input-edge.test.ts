import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/* Issue 9, part 1: one rule for bad text at the edge, schema-checked cursors and dates,
 * id lists bound as one parameter, and keyset pages that never drop a row. */

const ctx = useAppWithOwner();
const NUL = 'a\u0000b';
const LONE = 'note \udfff';
const b64 = (text: string) => Buffer.from(text).toString('base64url');

describe('invalid_text at the edge', () => {
  const cases: [string, string, string, unknown, string, boolean][] = [
    ['login email (no login needed)', 'POST', '/api/auth/login', { email: `a${NUL}@x.example`, password: 'whatever-123' }, 'email', false],
    ['signup name', 'POST', '/api/auth/signup', { email: 'n@x.example', password: 'long-enough-pass', workspaceName: NUL }, 'workspaceName', false],
    ['invitation accept', 'POST', '/api/invitations/accept', { token: NUL, password: 'long-enough-pass' }, 'token', false],
    ['workspace name', 'PATCH', '/api/workspace', { name: NUL }, 'name', true],
    ['contact name', 'POST', '/api/contacts', { email: 'c@x.example', firstName: NUL }, 'firstName', true],
    ['contact attribute', 'POST', '/api/contacts', { email: 'c@x.example', attributes: { company: NUL } }, 'attributes.company', true],
    ['suppression note, lone surrogate', 'POST', '/api/suppressions', { email: 's@x.example', note: LONE }, 'note', true],
    ['campaign name', 'POST', '/api/campaigns', { name: NUL, kind: 'marketing', mailboxId: randomUUID(), subject: 's', text: 't', contactIds: [randomUUID()] }, 'name', true],
    ['message subject', 'POST', '/api/messages', { mailboxId: randomUUID(), to: 'r@x.example', subject: NUL, text: 't' }, 'subject', true],
    ['a key', 'POST', '/api/contacts', { email: 'c@x.example', attributes: { [NUL]: 'x' } }, 'attributes.(key)', true],
  ];
  it.each(cases)('%s → 400 invalid_text naming the field, nothing stored', async (_name, method, path, json, field, authed) => {
    const before = await snapshotCounts(ctx.app.database.db);
    const res = await ctx.app.api(method, path, { json, token: authed ? ctx.owner.token : undefined });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_text');
    expect(res.body.error.details).toEqual([{ field, message: expect.any(String) }]);
    expect(await snapshotCounts(ctx.app.database.db)).toEqual(before);
  });

  it('in a query string and a form body', async () => {
    const query = await ctx.app.api('GET', '/api/contacts?q=%00', { token: ctx.owner.token });
    expect([query.status, query.body.error.code, query.body.error.details[0].field]).toEqual([400, 'invalid_text', 'query.q']);
    const form = await ctx.app.api('POST', '/p/sometoken', {
      body: 'topics=news%00',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(400);
    expect(form.headers.get('content-type')).toContain('text/html');
    expect(form.text).toContain('NUL');
    const multipart = new FormData();
    multipart.set('topics', 'news\u0000');
    const res = await fetch(`${ctx.app.baseUrl}/p/sometoken`, { method: 'POST', body: multipart });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('NUL');
    // The one-click opt-out skips a field that breaks the rule instead (a stray field must not
    // lose an opt-out: opt-out-one-click.test.ts); a One-Click value holding a NUL is no One-Click.
    const oneClick = await ctx.app.api('POST', '/u/sometoken', {
      body: 'List-Unsubscribe=One-Click%00',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(oneClick.status).toBe(400);
    expect(oneClick.text).toContain('One-Click');
  });

  it('a CSV cell with NUL fails its row as invalid_text; a header with NUL is a 400', async () => {
    const csv = (text: string) => ctx.app.api('POST', '/api/contacts/import', { token: ctx.owner.token, body: text, headers: { 'content-type': 'text/csv' } });
    const row = await csv(`email,company\nok@x.example,Acme\nbad@x.example,A\u0000cme\n`);
    expect(row.status).toBe(200);
    expect(row.body.failed).toBe(1);
    expect(row.body.errors[0]).toMatchObject({ line: 3, code: 'invalid_text' });
    const header = await csv(`email,comp\u0000any\nok@x.example,Acme\n`);
    expect([header.status, header.body.error.code]).toEqual([400, 'validation_failed']);
  });
});

describe('cursors and dates are validated before any query', () => {
  it.each([
    ['a uuid made of hyphens', b64(`2024-01-01T00:00:00Z|${'-'.repeat(36)}`)],
    ['a date past year 9999', b64(`+275760-09-13T00:00:00.000Z|${randomUUID()}`)],
    ['year 0', b64(`0000-01-01T00:00:00.000Z|${randomUUID()}`)],
    ['February 30th', b64(`2024-02-30T00:00:00.000Z|${randomUUID()}`)],
    ['extra parts', b64(`2024-01-01T00:00:00.000Z|${randomUUID()}|x`)],
    ['not base64url', '%%%'],
  ])('forged cursor (%s) → 400 on every paged list', async (_name, cursor) => {
    for (const list of ['/api/contacts', '/api/suppressions']) {
      const res = await ctx.app.api('GET', `${list}?cursor=${encodeURIComponent(cursor)}`, { token: ctx.owner.token });
      expect(res.status, list).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });

  it.each(['0000-01-01T00:00:00Z', '+275760-09-13T00:00:00.000Z', '1969-12-31T23:59:59Z'])('startAt %s → 400', async (startAt) => {
    const res = await ctx.app.api('POST', `/api/campaigns/${randomUUID()}/launch`, { token: ctx.owner.token, json: { startAt } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
  });
});

describe('lists of ids', () => {
  it('an audience of 70,000 ids is one bound parameter (the protocol stops at 65,535)', async () => {
    const repo = createCampaignsRepo(ctx.app.database.db);
    const ids = Array.from({ length: 70_000 }, () => randomUUID());
    expect(await repo.countContacts(ctx.owner.workspaceId, ids)).toBe(0);
    expect(await repo.contactsForMerge(ids)).toEqual([]);
  });
});

describe('keyset pages never drop a row', () => {
  /* Rows that share a millisecond: microseconds apart, and some exactly equal (the id breaks the tie). */

  async function pageThrough(path: string, key: string, limit: number) {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let guard = 0; guard < 1000; guard += 1) {
      const res: { status: number; body: any } = await ctx.app.api('GET', `${path}?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { token: ctx.owner.token });
      expect(res.status).toBe(200);
      seen.push(...res.body[key].map((row: { id: string }) => row.id));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    return seen;
  }

  it('contacts and suppressions, 300 rows in one millisecond, pages of 7', async () => {
    const { db } = ctx.app.database;
    const workspace = ctx.owner.workspaceId;
    // One statement each (also keeps the test's keep-alive connection from idling out meanwhile).
    const stamp = sql`('2026-03-01 10:00:00.123000+00'::timestamptz + ((g % 7) * interval '1 microsecond'))`;
    await db.execute(sql`insert into contacts (workspace_id, email, created_at) select ${workspace}::uuid, 'page' || g || '@x.example', ${stamp} from generate_series(0, 299) g`);
    await db.execute(
      sql`insert into suppressions (workspace_id, email, reason, created_at) select ${workspace}::uuid, 'page' || g || '@x.example', 'manual', ${stamp} from generate_series(0, 299) g`,
    );
    for (const [path, key, table] of [
      ['/api/contacts', 'contacts', 'contacts'],
      ['/api/suppressions', 'suppressions', 'suppressions'],
    ] as const) {
      const seen = await pageThrough(path, key, 7);
      const all = (await db.execute(sql.raw(`select id from ${table} where workspace_id = '${workspace}' order by created_at desc, id desc`))) as unknown as {
        rows: { id: string }[];
      };
      expect(all.rows.length).toBeGreaterThanOrEqual(300);
      expect(seen, path).toEqual(all.rows.map((r) => r.id));
    }
  });
});
