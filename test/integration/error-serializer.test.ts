import { Writable } from 'node:stream';
import { sql } from 'drizzle-orm';
import type { Request, Response } from 'express';
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/test-db.js';
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
