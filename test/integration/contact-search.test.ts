import { sql, type SQL } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContactsRepo } from '../../src/contacts/contacts.repo.js';
import { PgDialect } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/pg-proxy';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { explainText } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * Contact search (`contacts.repo.ts` `list` with `search`): a substring, in any case, of the
 * contact's first name, last name and address joined by spaces. It matched `ILIKE '%…%'` on
 * each column, which no btree index answers: the newest-first walk read the workspace's
 * contacts until a page matched, all of them when few did (110,330 tuples at 100,000 contacts;
 * BENCHMARKS.md, "Contact search by trigram (eighth pass)"). A trigram index (pg_trgm,
 * migration 0030) found the candidates instead — of every workspace, so a text common in others
 * read all of theirs, or the planner, judging by their statistics, walked this whole workspace.
 * Now the search filters the newest contacts (four pages' worth), then reads an index of the workspace and the
 * trigrams (btree_gin, migration 0052). On the test database (PGlite, or the server with
 * TEST_DATABASE_URL), with 3,000 contacts here and 3,000 in another workspace: the results, page
 * by page, equal a plain substring filter of the same rows, and EXPLAIN of the statements as the
 * repo builds them reads the index, and of this workspace only.
 */
const CONTACTS = 3_000;

let database: Database;
let workspaceId: string;
let otherWorkspaceId: string;

interface Row {
  id: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
}
let rows: Row[];

beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  const workspace = async (name: string) => rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values (${name}) returning id`))[0]!.id;
  workspaceId = await workspace('search');
  otherWorkspaceId = await workspace('elsewhere');
  // Newest first is g ascending; some contacts without a first or last name.
  await db.execute(sql`
    insert into contacts (workspace_id, email, address_hash, first_name, last_name, created_at)
    select ${workspaceId}::uuid, 'p' || g || '@search.test', md5(g::text),
           case when g % 5 = 0 then null else 'First' || g end, case when g % 3 = 0 then null else 'Last' || g end,
           now() - g * interval '1 second'
    from generate_series(1, ${CONTACTS}) g`);
  await db.execute(sql`
    insert into contacts (workspace_id, email, first_name, last_name, created_at, deleted_at) values
      (${workspaceId}::uuid, 'ada@engine.test', 'Ada', 'Lovelace', now() - interval '10 minutes', null),
      (${workspaceId}::uuid, 'countess@engine.test', 'Augusta Ada', 'King', now() - interval '20 minutes', null),
      (${workspaceId}::uuid, 'fifty%off@deal.test', 'Per', 'Cent', now() - interval '30 minutes', null),
      (${workspaceId}::uuid, 'first_last@deal.test', null, null, now() - interval '40 minutes', null),
      (${workspaceId}::uuid, 'gone@engine.test', 'Ada', 'Lovelace', now() - interval '50 minutes', now()),
      (${otherWorkspaceId}::uuid, 'ada@other.test', 'Ada', 'Lovelace', now(), null),
      (${workspaceId}::uuid, 'rare@engine.test', 'Rhea', 'Smithson', now() - interval '60 minutes', null)`);
  // A surname common in another workspace and rare in this one (the planner judges by both).
  await db.execute(sql`
    insert into contacts (workspace_id, email, address_hash, first_name, last_name)
    select ${otherWorkspaceId}::uuid, 's' || g || '@elsewhere.test', md5('s' || g), 'Other' || g, 'Smithson'
    from generate_series(1, ${CONTACTS}) g`);
  await db.execute(sql`analyze contacts`);
  rows = rowsOf<Row>(
    await db.execute(sql`
      select id, email, first_name, last_name from contacts
      where workspace_id = ${workspaceId}::uuid and deleted_at is null order by created_at desc, id desc`),
  );
}, 60_000);
afterAll(() => database?.close());

/** What a search must return, in page order: a plain substring filter, any case. */
const expected = (search: string) =>
  rows.filter((r) => `${r.first_name ?? ''} ${r.last_name ?? ''} ${r.email}`.toLowerCase().includes(search.toLowerCase())).map((r) => r.email);

/** Every page of a search, following the cursor as the API does. */
async function searchAll(search: string, limit: number): Promise<string[]> {
  const repo = createContactsRepo(database.db, (email) => email);
  const found: string[] = [];
  let before: { createdAt: string; id: string } | undefined;
  for (;;) {
    const page = await repo.list(workspaceId, { limit, before, search });
    found.push(...page.map((c) => c.email));
    if (page.length < limit) return found;
    const last = page[page.length - 1]!;
    before = { createdAt: last.cursorAt, id: last.id };
  }
}

describe('contact search', () => {
  it.each([
    ['lovelace', 'a name, any case'],
    ['ADA LOVE', 'first and last name together'],
    ['Last12', 'a name many contacts share, over several pages'],
    ['p2042@', 'part of an address'],
    ['search.test', 'what every generated contact has'],
    ['ad', 'two characters (no trigram)'],
    ['a', 'one character'],
    ['%', 'a wildcard character, meant literally'],
    ['_', 'an underscore, meant literally'],
    ['zq', 'nothing'],
  ])('%s: %s — the same contacts as a substring filter, newest first, page by page', async (search) => {
    const want = expected(search);
    expect(await searchAll(search, 50)).toEqual(want);
    if (search !== 'zq') expect(want.length).toBeGreaterThan(0);
  });

  it('never returns a deleted contact or another workspace\'s', async () => {
    expect(await searchAll('lovelace', 50)).toEqual(['ada@engine.test']);
  });

  /** EXPLAIN (ANALYZE, BUFFERS) of each statement a search sends when the first finds no full page (its two steps). */
  async function searchPlans(search: string) {
    const statements: { sql: string; params: unknown[] }[] = [];
    const capture = drizzle(async (text, params) => (statements.push({ sql: text, params }), { rows: [] }));
    Object.assign(capture, { execute: async (query: SQL) => (statements.push(new PgDialect().sqlToQuery(query)), { rows: [] }) });
    await createContactsRepo(capture as unknown as Db, (email) => email).list(workspaceId, { limit: 51, search });
    const plans: string[] = [];
    for (const statement of statements) plans.push(await explainText(database.db, statement));
    return plans;
  }

  it(`is an index search: the newest contacts (four pages) filtered, then the index of the workspace and the trigrams — never the ${CONTACTS} contacts`, async () => {
    const [walk, indexed, ...rest] = await searchPlans('p2042@');
    expect(rest).toEqual([]);
    // The bounded walk reads at most four pages' worth of the newest contacts (51 a page).
    expect(walk).toMatch(/Limit .* rows=204 /);
    expect(indexed).toMatch(/Bitmap Index Scan on contacts_search_workspace_trgm_idx/);
    expect(indexed).not.toMatch(/Seq Scan on contacts/);
    expect(indexed).not.toMatch(/contacts_workspace_created_idx/);
  });

  it('a text common in another workspace and rare in this one reads only this one\'s match (the index leads with the workspace)', async () => {
    expect(await searchAll('smithson', 50)).toEqual(['rare@engine.test']);
    const [, indexed] = await searchPlans('smithson');
    // The index gives this workspace's one match, not the other's 3,000 to filter out (the planner
    // expects about 1,500: it judges the text by both workspaces).
    const [, fromIndex] = /Bitmap Index Scan on contacts_search_workspace_trgm_idx .*?actual time=[\d.]+\.\.[\d.]+ rows=([\d.]+)/.exec(indexed!) ?? [];
    expect(Number(fromIndex)).toBe(1);
  });
});
