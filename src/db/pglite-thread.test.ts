import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PGlite, messages } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serializeError } from '../logger.js';
import { PgliteThread } from './pglite-thread.js';

/**
 * The embedded database on its worker thread against PGlite in-process: same values, same
 * errors, same transaction semantics. Both real engines.
 */
let local: PGlite;
let thread: PgliteThread;
const onThread = () => drizzle({ client: thread as unknown as PGlite });
const inProcess = () => drizzle({ client: local });

beforeAll(async () => {
  [local, thread] = await Promise.all([PGlite.create(), PgliteThread.start({})]);
  for (const db of [inProcess(), onThread()]) {
    await db.execute(sql`create table t (id int primary key, v text, at timestamptz default '2026-01-02T03:04:05.678Z', doc jsonb, bytes bytea)`);
  }
});
afterAll(async () => {
  await Promise.all([local?.close(), thread?.close()]);
});

describe('PGlite on a worker thread', () => {
  it('returns the same values as in-process: dates, numeric, int8, jsonb, arrays, bytea, intervals, nulls; both row modes', async () => {
    const query = sql`select '2026-01-02T03:04:05.678Z'::timestamptz as ts, '2024-01-02'::date as d, now()::timestamp - now()::timestamp as iv,
      12345678901234::bigint as big, 1.50::numeric as num, array[1.5, 2]::numeric[] as nums, '{"a":[1,"x",null]}'::jsonb as doc,
      array[1,2,3] as ints, array['a','b']::text[] as texts, array['2024-01-01'::timestamptz] as tss, '\\xdeadbeef'::bytea as bytes,
      true as yes, null::int as nothing`;
    const [a, b] = await Promise.all([inProcess().execute(query), onThread().execute(query)]);
    expect(b.rows).toEqual(a.rows);
    expect(b.fields).toEqual(a.fields);
    expect(b.rows[0]!.bytes).toBeInstanceOf(Uint8Array);

    // Drizzle's select with fields: array row mode, its column mappers (timestamps as Date).
    const insert = { id: 1, v: 'x', doc: { k: [1, 2] }, bytes: Buffer.from('hi') };
    for (const db of [inProcess(), onThread()]) {
      await db.execute(sql`insert into t (id, v, doc, bytes) values (${insert.id}, ${insert.v}, ${JSON.stringify(insert.doc)}, ${insert.bytes})`);
    }
    const select = sql<{ id: number }>`select id, v, at, doc, bytes from t`;
    const [rowsA, rowsB] = await Promise.all([inProcess().execute(select), onThread().execute(select)]);
    expect(rowsB.rows).toEqual(rowsA.rows);
    expect(rowsB.rows[0]).toMatchObject({ id: 1, at: '2026-01-02 03:04:05.678+00', doc: { k: [1, 2] } });
  });

  it('a Postgres error is PGlite’s DatabaseError with the same fields; the logged form hides the parameters', async () => {
    type Failure = Error & { cause: messages.DatabaseError };
    const failing = (db: ReturnType<typeof inProcess>) =>
      db.execute(sql`insert into t (id, v) values (1, ${'secret-value'})`).then(
        () => expect.fail('the insert should conflict') as never,
        (error: unknown) => error as Failure,
      );
    const [a, b] = await Promise.all([failing(inProcess()), failing(onThread())]);
    expect(b.cause).toBeInstanceOf(messages.DatabaseError);
    for (const field of ['message', 'code', 'constraint', 'detail', 'table', 'schema', 'severity', 'routine'] as const) {
      expect(b.cause[field], field).toEqual(a.cause[field]);
    }
    expect(b.cause.code).toBe('23505');
    expect(b.message).toBe(a.message);
    expect(JSON.stringify(serializeError(b))).toBe(JSON.stringify(serializeError(a)));
    expect(JSON.stringify(serializeError(b))).not.toContain('secret-value');
  });

  it('while a transaction is open every other statement waits for its COMMIT; a throw or tx.rollback() rolls back', async () => {
    const db = onThread();
    const seen: string[] = [];
    let opened!: () => void;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    const transaction = db.transaction(async (tx) => {
      await tx.execute(sql`insert into t (id, v) values (10, 'in tx')`);
      opened();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await tx.transaction(async (nested) => nested.execute(sql`insert into t (id, v) values (11, 'savepoint')`));
      seen.push('commit');
    });
    await isOpen;
    const outside = db.execute(sql`select count(*)::int as n from t where id in (10, 11)`).then((r) => seen.push(`outside saw ${r.rows[0]!.n}`));
    await Promise.all([transaction, outside]);
    expect(seen).toEqual(['commit', 'outside saw 2']);

    await expect(db.transaction(async (tx) => {
      await tx.execute(sql`insert into t (id, v) values (12, 'x')`);
      throw new Error('boom');
    })).rejects.toThrow('boom');
    await expect(db.transaction(async (tx) => {
      await tx.execute(sql`insert into t (id, v) values (13, 'x')`);
      tx.rollback();
    })).rejects.toThrow(/rollback/i);
    const left = await db.execute(sql`select id from t where id >= 10 order by id`);
    expect(left.rows).toEqual([{ id: 10 }, { id: 11 }]);

    // A statement on a transaction that has ended fails as in PGlite, and does not run.
    let closedTx: { query: (q: string) => Promise<unknown> } | undefined;
    await thread.transaction(async (tx) => {
      closedTx = tx;
    });
    await expect(closedTx!.query('select 1')).rejects.toThrow('Transaction is closed');
  });

  it('dumps its data dir, and a new one starts from that dump', async () => {
    const dump = await thread.dumpDataDir('none');
    const copy = await PgliteThread.start({ loadDataDir: dump });
    try {
      expect((await copy.query<{ n: number }>('select count(*)::int as n from t')).rows).toEqual((await thread.query('select count(*)::int as n from t')).rows);
    } finally {
      await copy.close();
    }
  });

  it('close() twice is fine; afterwards calls fail and the process can exit', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pglite-thread-'));
    try {
      const script = path.join(dir, 'exit.mts');
      const connect = path.join(path.dirname(fileURLToPath(import.meta.url)), 'connect.ts');
      writeFileSync(
        script,
        `import { connect } from ${JSON.stringify(connect)};
         const database = await connect({ kind: 'pglite', dir: ${JSON.stringify(path.join(dir, 'data'))} });
         await database.ping();
         await database.close();
         await database.close();
         await database.ping().then(() => console.log('still open'), (error) => console.log('after close:', error.message));`,
      );
      const tsx = path.resolve('node_modules/.bin/tsx');
      // Without the worker ended, this child would never exit and the call would time out.
      const { stdout } = await promisify(execFile)(tsx, [script], { timeout: 20_000 });
      expect(stdout.trim()).toBe('after close: PGlite is closed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
