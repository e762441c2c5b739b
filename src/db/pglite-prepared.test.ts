import { PGlite } from '@electric-sql/pglite';
import { sql, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgliteThread } from './pglite-thread.js';
import { CUSTOM_PLAN, GENERIC_PLAN } from './plan-hints.js';

/**
 * Prepared statements on PGlite's thread (pglite-prepared.ts): a statement run again and again
 * (prepared from its second run) gives what PGlite in-process gives every time, inside and
 * outside transactions, after the table changed under it, and when it fails. Both real engines.
 */
let local: PGlite;
let thread: PgliteThread;
const onThread = () => drizzle({ client: thread as unknown as PGlite });
const inProcess = () => drizzle({ client: local });
type Drizzle = ReturnType<typeof inProcess>;

beforeAll(async () => {
  [local, thread] = await Promise.all([PGlite.create(), PgliteThread.start({})]);
  for (const db of [inProcess(), onThread()]) {
    await db.execute(sql`create table p (id int primary key, v text, at timestamptz, tags text[], doc jsonb)`);
  }
});
afterAll(async () => {
  await Promise.all([local?.close(), thread?.close()]);
});

/** Runs `make(i)` for i = 0..runs-1 on both engines, one after another; the results of each run side by side. */
async function both(runs: number, make: (i: number) => SQL) {
  const results: { local: unknown; thread: unknown }[] = [];
  for (let i = 0; i < runs; i++) {
    results.push({ local: (await inProcess().execute(make(i))).rows, thread: (await onThread().execute(make(i))).rows });
  }
  return results;
}

const planCacheMode = async (db: Drizzle) => (await db.execute(sql`show plan_cache_mode`)).rows[0];

describe('prepared statements on PGlite’s thread', () => {
  it('a statement run many times (prepared from its second run) returns what PGlite in-process returns: parameters of every type, both row modes', async () => {
    const runs = await both(6, (i) => sql`
      insert into p (id, v, at, tags, doc) values (${i}, ${`v${i}`}, ${new Date(Date.UTC(2026, 0, 1 + i)).toISOString()}, ${`{a,b${i}}`}, ${JSON.stringify({ n: i })})
      returning id, v, at, tags, doc`);
    for (const [i, run] of runs.entries()) {
      expect(run.thread).toEqual(run.local);
      expect(run.thread).toEqual([{ id: i, v: `v${i}`, at: expect.any(String), tags: ['a', `b${i}`], doc: { n: i } }]);
    }
    const reads = await both(4, (i) => sql`select id, v, doc from p where id >= ${i} and v <> ${'none'} order by id`);
    for (const run of reads) expect(run.thread).toEqual(run.local);
    // Drizzle's query builder (array row mode, its own column mapping) on the same text, again and again.
    for (let i = 0; i < 4; i++) {
      const [a, b] = [await inProcess().execute(sql`select count(*)::int as n, max(at) as last from p where id < ${i + 3}`), await onThread().execute(sql`select count(*)::int as n, max(at) as last from p where id < ${i + 3}`)];
      expect(b.rows).toEqual(a.rows);
    }
  });

  it('a prepared statement that fails fails as in-process and changes nothing; the next run works', async () => {
    const insert = (id: number) => sql`insert into p (id, v) values (${id}, ${'dup'})`;
    for (const db of [inProcess(), onThread()]) {
      await db.execute(insert(100));
      await db.execute(insert(101));
      const failed = await db.execute(insert(100)).then(
        () => undefined,
        (error: { cause?: { code?: string } }) => error.cause?.code,
      );
      expect(failed).toBe('23505');
      await db.execute(insert(102));
      expect((await db.execute(sql`select count(*)::int as n from p where v = 'dup'`)).rows).toEqual([{ n: 3 }]);
    }
  });

  it('inside a transaction: prepared statements see the transaction’s own writes, and a rollback undoes them', async () => {
    const db = onThread();
    const count = sql`select count(*)::int as n from p where v = 'tx'`;
    await db.execute(count);
    await db.execute(count);
    await db
      .transaction(async (tx) => {
        for (let i = 200; i < 204; i++) {
          await tx.execute(sql`insert into p (id, v) values (${i}, ${'tx'})`);
          expect((await tx.execute(count)).rows).toEqual([{ n: i - 199 }]);
        }
        throw new Error('roll back');
      })
      .catch((error: Error) => expect(error.message).toBe('roll back'));
    expect((await db.execute(count)).rows).toEqual([{ n: 0 }]);
  });

  it('a table changed under a prepared statement: the next run answers with the new columns, as in-process', async () => {
    await both(3, () => sql`create table if not exists q (a int)`);
    await both(1, () => sql`insert into q values (1)`);
    const before = await both(3, () => sql`select * from q`);
    expect(before.at(-1)).toEqual({ local: [{ a: 1 }], thread: [{ a: 1 }] });
    await both(1, () => sql`alter table q add column b text default 'x'`);
    const after = await both(2, () => sql`select * from q`);
    for (const run of after) expect(run).toEqual({ local: [{ a: 1, b: 'x' }], thread: [{ a: 1, b: 'x' }] });
  });

  it('a schema change inside a transaction, and a column whose type changed: the next runs parse again and answer as in-process', async () => {
    await both(1, () => sql`create table r (a int)`);
    await both(1, () => sql`insert into r values (1)`);
    await both(3, () => sql`select * from r`); // prepared on the thread
    const inTransaction = async (db: Drizzle) =>
      db.transaction(async (tx) => {
        await tx.execute(sql`alter table r add column c text default 'y'`);
        return (await tx.execute(sql`select * from r`)).rows;
      });
    expect(await inTransaction(onThread())).toEqual(await inTransaction(inProcess()));
    // A parameter's type as inferred at Parse: a value past int after the column became bigint.
    await both(3, (i) => sql`select a from r where a = ${i}`);
    await both(1, () => sql`alter table r alter column a type bigint`);
    const big = await both(2, () => sql`select a from r where a = ${'5000000000'}`);
    for (const run of big) expect(run).toEqual({ local: [], thread: [] });
  });

  it('DEALLOCATE ALL: every statement, the hinted one included, is prepared again and answers', async () => {
    const db = onThread();
    const hinted = (id: number) => sql`${sql.raw(GENERIC_PLAN)} select id from p where id = ${id}`;
    for (let i = 0; i < 3; i++) await db.execute(hinted(i));
    await db.execute(sql`deallocate all`);
    for (let i = 0; i < 4; i++) expect((await db.execute(hinted(i))).rows).toEqual((await inProcess().execute(hinted(i))).rows);
    expect(await planCacheMode(db)).toEqual({ plan_cache_mode: 'auto' });
  });

  it('more statement texts than the cache holds: each still answers right, old ones after they were forgotten too', async () => {
    const db = onThread();
    for (let round = 0; round < 2; round++) {
      for (let k = 0; k < 260; k++) {
        expect((await db.execute(sql.raw(`select ${k} as k, '${round}' as r`))).rows).toEqual([{ k, r: String(round) }]);
      }
    }
    expect((await db.execute(sql.raw(`select 0 as k, '9' as r`))).rows).toEqual([{ k: 0, r: '9' }]);
  });

  it('a statement hinted for a generic plan returns the same rows, is planned generically, and leaves plan_cache_mode at its default, also when it fails', async () => {
    const db = onThread();
    const hinted = (id: number) => sql`${sql.raw(GENERIC_PLAN)} select id, v from p where id = any(${`{${id},${id + 1}}`}::int[]) order by id`;
    for (let i = 0; i < 4; i++) {
      expect((await db.execute(hinted(i))).rows).toEqual((await inProcess().execute(hinted(i))).rows);
      expect(await planCacheMode(db)).toEqual({ plan_cache_mode: 'auto' });
    }
    // Prepared from its second run, and planned generically every time since (PostgreSQL counts them).
    const plans = await db.execute(sql`select generic_plans, custom_plans from pg_prepared_statements where statement like ${`${GENERIC_PLAN} select id, v from p%`}`);
    expect(plans.rows).toEqual([{ generic_plans: 3, custom_plans: 0 }]);
    const failing = sql`${sql.raw(GENERIC_PLAN)} insert into p (id, v) values (${0}, ${'again'})`;
    for (let i = 0; i < 3; i++) {
      await expect(db.execute(failing)).rejects.toThrow();
      expect(await planCacheMode(db)).toEqual({ plan_cache_mode: 'auto' });
    }
  });
  it('a statement hinted for custom plans (the hint inside it) is planned for its values on every run, and leaves plan_cache_mode at its default', async () => {
    const db = onThread();
    const hinted = (id: number) => sql`select id, v from p where ${sql.raw(CUSTOM_PLAN)} id = ${id}`;
    for (let i = 0; i < 9; i++) {
      expect((await db.execute(hinted(i))).rows).toEqual((await inProcess().execute(hinted(i))).rows);
      expect(await planCacheMode(db)).toEqual({ plan_cache_mode: 'auto' });
    }
    // Prepared from its second run; left to itself PostgreSQL tries a generic plan after five custom ones.
    const plans = await db.execute(sql`select generic_plans, custom_plans from pg_prepared_statements where statement like ${`select id, v from p where ${CUSTOM_PLAN}%`}`);
    expect(plans.rows).toEqual([{ generic_plans: 0, custom_plans: 8 }]);
  });

  it('a hinted statement is prepared again after 100 runs (its generic plan follows the tables as they grow); an unhinted one is not', async () => {
    const db = onThread();
    await db.execute(sql`create table grow (id int, k int)`);
    const hinted = (k: number) => sql`${sql.raw(GENERIC_PLAN)} select count(*)::int as n from grow where k = ${k}`;
    const plain = (k: number) => sql`select count(*)::int as n from grow where k = ${k} and id > 0`;
    const names = async () =>
      Object.fromEntries(
        ((await db.execute(sql`select name, statement like '%generic plan%' as hinted from pg_prepared_statements where statement like '%from grow where k%'`)).rows as { name: string; hinted: boolean }[]).map(
          (r) => [r.hinted ? 'hinted' : 'plain', r.name],
        ),
      );
    for (let i = 0; i < 3; i++) await Promise.all([db.execute(hinted(i)), db.execute(plain(i))]);
    const first = await names();
    await db.execute(sql`insert into grow select g, g % 10 from generate_series(1, 1000) g`);
    for (let i = 0; i < 100; i++) {
      expect((await db.execute(hinted(i % 10))).rows).toEqual([{ n: 100 }]);
      await db.execute(plain(i % 10));
    }
    const later = await names();
    expect(later.hinted).toBeDefined();
    expect(later.hinted).not.toBe(first.hinted);
    expect(later.plain).toBe(first.plain);
  });
});
