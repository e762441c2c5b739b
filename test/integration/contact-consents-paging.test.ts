import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A contact's consent history pages (GET /api/contacts/:id/consents, `limit` ≤ 1,000, default
 * 200, `cursor`/`nextCursor`), newest first in the order that decides the latest (time, then the
 * order written); the contact's page shows the newest 200. Before, both returned every record:
 * 3,003 records took 103–130 ms on a server (BENCHMARKS.md, twenty-third pass).
 */

const ctx = useAppWithOwner();

describe("a contact's consent history", () => {
  it('P-11 pages through every record exactly once, newest first, ties at one instant in the order written', async () => {
    const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: `pages-${Date.now()}@example.com` } });
    expect(contact.status, contact.text).toBe(201);
    // 450 records; every three share an instant (an import's date-only values are all midnight).
    await ctx.app.database.db.execute(sql`
      insert into consents (workspace_id, contact_id, status, source, policy_version, actor, at)
      select ${ctx.owner.workspaceId}::uuid, ${contact.body.id}::uuid, case when g % 2 = 0 then 'opted_in' else 'opted_out' end::consent_status,
             'form ' || g, '2026-11-01', 'user:x', timestamptz '2026-01-01' + (g / 3) * interval '1 minute'
      from generate_series(1, 450) g`);
    const expected = rowsOf<{ id: string }>(
      await ctx.app.database.db.execute(sql`select id from consents where contact_id = ${contact.body.id}::uuid order by at desc, seq desc`),
    ).map((r) => String(r.id));

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?cursor=${cursor}` : '';
      const page = await ctx.app.api('GET', `/api/contacts/${contact.body.id}/consents${query}`, { token: ctx.owner.token });
      expect(page.status, page.text).toBe(200);
      seen.push(...page.body.consents.map((c: { id: string }) => c.id));
      cursor = page.body.nextCursor;
      pages += 1;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(expected);

    const small = await ctx.app.api('GET', `/api/contacts/${contact.body.id}/consents?limit=7`, { token: ctx.owner.token });
    expect(small.body.consents.map((c: { id: string }) => c.id)).toEqual(expected.slice(0, 7));

    const timeline = (await ctx.app.api('GET', `/api/contacts/${contact.body.id}`, { token: ctx.owner.token })).body.timeline as { type: string }[];
    expect(timeline.filter((entry) => entry.type === 'consent')).toHaveLength(200);
  });

  it('a bad limit or a forged cursor is a 400 that names the field', async () => {
    const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: `bad-page-${Date.now()}@example.com` } });
    for (const query of ['limit=0', 'limit=1001', 'limit=abc', 'cursor=not-a-cursor', `cursor=${Buffer.from('2026-01-01T00:00:00Z|x').toString('base64url')}`]) {
      const refused = await ctx.app.api('GET', `/api/contacts/${contact.body.id}/consents?${query}`, { token: ctx.owner.token });
      expect(refused.status, query).toBe(400);
      expect(refused.body.error.code, query).toBe('validation_failed');
    }
  });
});
