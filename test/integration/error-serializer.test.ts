import { Writable } from 'node:stream';
import { sql } from 'drizzle-orm';
import type { Request, Response } from 'express';
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/test-db.js';
import { againAfterConcurrencyFailure } from '../../src/db/pg-errors.js';
import { errorMiddleware } from '../../src/errors.js';
import { createLogger, serializeError } from '../../src/logger.js';
import { unsubscribeErrorPage } from '../../src/suppression/unsubscribe.routes.js';

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger('info', sink), text: () => lines.join('') };
}

const fakeRes = () => {
  const res = { headersSent: false, statusCode: 0, setHeader() {}, status(code: number) { res.statusCode = code; return res; }, json() { return res; }, type() { return res; }, send() { return res; } };
  return res as unknown as Response & { statusCode: number };
};

describe('one error serializer for every log line', () => {
  it('a real database error (Drizzle, carrying query and params) is logged as code, constraint and table only', async () => {
    const database = await createTestDatabase();
    const secrets = ['scrypt$16384$8$1$c2FsdA==$aGFzaA==', 'victim@secret.example', 'A campaign body nobody may read'];
    let error: unknown;
    try {
      await database.db.execute(sql`select ${secrets[0]}::text, ${secrets[1]}::text, ${secrets[2]}::uuid`);
    } catch (e) {
      error = e;
    } finally {
      await database.close();
    }
    expect(error).toBeDefined();
    expect(serializeError(error)).toEqual({ type: 'DatabaseError', code: '22P02' });

    const { logger, text } = capture();
    logger.error({ err: error }, 'direct');
    errorMiddleware(logger)(error, { log: undefined } as unknown as Request, fakeRes(), () => {});
    unsubscribeErrorPage(error, { log: logger } as unknown as Request, fakeRes(), () => {});
    const logs = text();
    expect(logs.match(/"code":"22P02"/g)).toHaveLength(3);
    for (const secret of secrets) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/params|select/i);
  });

  it('a deadlock or serialization failure raised by the database is 409 concurrent_change with Retry-After, logged by its SQLSTATE alone', async () => {
    const database = await createTestDatabase();
    const errors: unknown[] = [];
    try {
      for (const state of ['40P01', '40001']) {
        try {
          // The database's own error, its message quoting a value (as a deadlock's detail can).
          await database.db.execute(sql.raw(`do $$ begin raise exception 'lost a race over victim@secret.example' using errcode = '${state}'; end $$`));
        } catch (e) {
          errors.push(e);
        }
      }
    } finally {
      await database.close();
    }
    expect(errors).toHaveLength(2);
    for (const error of errors) {
      const { logger, text } = capture();
      const headers: Record<string, string> = {};
      let body: unknown;
      const res = Object.assign(fakeRes(), {
        setHeader: (name: string, value: string) => void (headers[name.toLowerCase()] = value),
        json: (value: unknown) => void (body = value),
      });
      errorMiddleware(logger)(error, { log: undefined, complete: true } as unknown as Request, res, () => {});
      expect(res.statusCode).toBe(409);
      expect(body).toMatchObject({ error: { code: 'concurrent_change' } });
      expect(headers['retry-after']).toBe('1');
      expect(text()).toMatch(/"sqlState":"40(P01|001)"/);
      expect(text()).not.toContain('victim@secret.example');
      expect(JSON.stringify(body)).not.toContain('victim@secret.example');
    }
  });

  it('a transaction the database gives up is run again, up to three runs in all; any other error at once', async () => {
    const database = await createTestDatabase();
    try {
      await database.db.execute(sql`create table tries (n int)`);
      let runs = 0;
      /** A transaction that writes a row, then is given up by the database (`state`) in its first `failures` runs. */
      const work = (failures: number, state = '40P01') => async () => {
        runs += 1;
        await database.db.transaction(async (tx) => {
          await tx.execute(sql`insert into tries values (1)`);
          if (runs <= failures) await tx.execute(sql.raw(`do $$ begin raise exception 'lost' using errcode = '${state}'; end $$`));
        });
        return 'committed';
      };
      const rows = async () => ((await database.db.execute(sql`select count(*)::int as n from tries`)) as unknown as { rows: { n: number }[] }).rows[0]!.n;
      const attempt = async (failures: number, state?: string) => {
        runs = 0;
        await database.db.execute(sql`delete from tries`);
        return againAfterConcurrencyFailure(work(failures, state));
      };
      // Two runs given up (a deadlock, a serialization failure), the third commits: one row, each lost run rolled back whole.
      await expect(attempt(2)).resolves.toBe('committed');
      expect([runs, await rows()]).toEqual([3, 1]);
      await expect(attempt(2, '40001')).resolves.toBe('committed');
      expect([runs, await rows()]).toEqual([3, 1]);
      // Given up every time: the third failure is the answer.
      await expect(attempt(3)).rejects.toMatchObject({ cause: expect.objectContaining({ code: '40P01' }) });
      expect([runs, await rows()]).toEqual([3, 0]);
      // Any other failure is not run again.
      await expect(attempt(3, '23505')).rejects.toBeDefined();
      expect([runs, await rows()]).toEqual([1, 0]);
    } finally {
      await database.close();
    }
  });

  it('a unique violation keeps its constraint and table; other errors keep type, message and a few scalars, never a property bag', () => {
    const unique = Object.assign(new Error('Failed query: insert … params: a@b.example'), {
      cause: {
        code: '23505',
        constraint: 'users_email_unique',
        table: 'users',
        message: 'duplicate key value violates unique constraint "users_email_unique"',
        detail: 'Key (email)=(a@b.example) already exists.',
      },
    });
    expect(serializeError(unique)).toEqual({
      type: 'DatabaseError',
      code: '23505',
      constraint: 'users_email_unique',
      table: 'users',
      message: 'duplicate key value violates unique constraint "users_email_unique"',
    });
    const google = Object.assign(new Error('invalid_grant'), { status: 400, config: { headers: { Authorization: 'Bearer ya29.secret' } } });
    const out = serializeError(google) as Record<string, unknown>;
    expect(out).toMatchObject({ type: 'Error', message: 'invalid_grant', status: 400 });
    expect(JSON.stringify(out)).not.toContain('ya29');
    expect(serializeError({ code: '22P02', message: 'invalid input syntax for type uuid: "secret"' })).toEqual({ type: 'DatabaseError', code: '22P02' });
  });
});
