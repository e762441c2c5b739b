import pg from 'pg';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A search that does not fill its page from the newest contacts lists the workspace's matches
 * and then reads their rows (contacts.repo.ts `list`). As two statements, a contact deleted
 * between them made the page one short, which the API answers with `nextCursor: null` — the
 * client stops paging and every later match is lost (an attacker's finding: 3 of 12 pages while
 * another connection kept deleting and restoring one match). One statement reads both on one
 * snapshot. A server only: PGlite runs one statement at a time.
 */
const ctx = useAppWithOwner();
let workspaceId: string;

beforeAll(async () => {
  workspaceId = ctx.owner.workspaceId;
  // 1,500 contacts, every hundredth a match: the first step's 200 newest hold two, a page of three needs the second.
  await ctx.app.database.db.execute(sql`
    insert into contacts (workspace_id, email, address_hash, first_name, created_at)
    select ${workspaceId}::uuid, 'u' || g || '@race.test', md5(g::text), case when g % 100 = 0 then 'Rare' || g else 'Fn' || g end, now() - g * interval '1 second'
    from generate_series(1, 1500) g`);
});

describe.runIf(process.env.TEST_DATABASE_URL)('contact search while a match is deleted and restored (server)', () => {
  it('never says "last page" while more than a page of matches remains', { timeout: 60_000 }, async () => {
    const toggler = new pg.Client({ connectionString: (ctx.app.database as unknown as { url: string }).url });
    await toggler.connect();
    let stop = false;
    const toggling = (async () => {
      while (!stop) await toggler.query(`update contacts set deleted_at = case when deleted_at is null then now() else null end where workspace_id = $1 and first_name = 'Rare300'`, [workspaceId]);
    })();
    let lastPages = 0;
    try {
      for (let request = 0; request < 150; request += 1) {
        const res = await ctx.app.api('GET', '/api/contacts?q=rare&limit=3', { token: ctx.owner.token });
        expect(res.status).toBe(200);
        expect(res.body.contacts).toHaveLength(3);
        if (res.body.nextCursor === null) lastPages += 1;
      }
    } finally {
      stop = true;
      await toggling;
      await toggler.end();
    }
    expect(lastPages).toBe(0);
  });
});
