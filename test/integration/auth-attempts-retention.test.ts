import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjectHasher } from '../../src/auth/throttle.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-13 and the login/signup/account-mail throttle (src/auth/throttle.ts): its rows name an
 * address by a hash, so they must be keyed (a bare SHA-256 of an address is matched by hashing
 * a list of addresses) and must not outlive their window — a closed account's attempts were
 * found in auth_attempts after its purge, swept only as other attempts came in.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let clock = Date.now();
let app: TestApp;
const db = () => app.database.db;
const keyed = () => subjectHasher(app.config.privacy.suppressionHashKey);
const bareSha256 = (kind: string, value: string) => createHash('sha256').update(`${kind}:${value}`).digest('hex');
const attempts = async () => rowsOf<{ kind: string; subject: string }>(await db().execute(sql`select kind, subject from auth_attempts order by kind, subject`));
const login = (email: string, password: string) => app.api('POST', '/api/auth/login', { json: { email, password } });

/** Runs `work` with the app's clock `ms` ahead, then puts it back. */
async function later<T>(ms: number, work: () => Promise<T>): Promise<T> {
  clock += ms;
  try {
    return await work();
  } finally {
    clock -= ms;
  }
}

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
});
afterAll(async () => {
  await app?.close();
});

describe('P-13 auth_attempts', () => {
  it('P-13 after a closed account is purged, no hash of its address is left in auth_attempts, keyed or not', async () => {
    const email = `closing-${Date.now()}@example.com`;
    // The signup's confirmation mail counts against the address (kind `mail`), and a mistyped password against the account (kind `login`).
    const user = await signUp(app, { email });
    expect((await login(email, 'wrong password here')).status).toBe(401);
    const held = await attempts();
    // The rows are there, under keyed subjects only: nothing a list of addresses can be hashed against.
    expect(held).toEqual(expect.arrayContaining([{ kind: 'mail', subject: keyed()('recipient', email) }, { kind: 'login', subject: keyed()('account', email) }]));
    const values = [email, user.userId, '127.0.0.1', '::ffff:127.0.0.1', '::1'];
    const bare = new Set(['account', 'recipient', 'address', 'user', 'device', 'recheck'].flatMap((kind) => values.map((v) => bareSha256(kind, v))));
    expect(held.filter((row) => bare.has(row.subject))).toEqual([]);

    const closed = await app.api('POST', '/api/privacy/delete-account', { token: user.token, json: { password: user.password } });
    expect(closed.status, closed.text).toBe(200);
    await later(30 * DAY + 1000, async () => {
      // What the worker has done by then: the hourly sweep of attempts, the daily purge.
      await app.services.throttle.sweepExpired();
      expect((await app.services.purge.runOnce()).user).toBeGreaterThanOrEqual(1);
      expect(await tablesMentioning(db(), email)).toEqual({});
      const subjects = new Set([...bare, keyed()('recipient', email), keyed()('account', email)]);
      expect((await attempts()).filter((row) => subjects.has(row.subject))).toEqual([]);
    });
  });

  it('the sweep deletes each kind of attempt once past its window, however few attempts came in since, and keeps those still counted (P-13)', async () => {
    const email = `swept-${Date.now()}@example.com`;
    expect((await app.services.throttle.mayMail(email)).allowed).toBe(true);
    expect((await app.services.throttle.mayMailResubscribe(email)).allowed).toBe(true);
    const kinds = async () => (await attempts()).filter((row) => row.subject === keyed()('recipient', email)).map((row) => row.kind);
    expect(await kinds()).toEqual(['mail', 'resubscribe-mail']);

    // Within the account-mail hour both still count: nothing goes.
    await later(HOUR - 1000, () => app.services.throttle.sweepExpired());
    expect(await kinds()).toEqual(['mail', 'resubscribe-mail']);
    // Past it the account mail goes; the resubscribe confirmation is counted for a day.
    expect(await later(HOUR + 1000, () => app.services.throttle.sweepExpired())).toBeGreaterThanOrEqual(1);
    expect(await kinds()).toEqual(['resubscribe-mail']);
    await later(DAY + 1000, () => app.services.throttle.sweepExpired());
    expect(await kinds()).toEqual([]);
  });

  it('the worker runs the sweep as a scheduled job, auth-attempts-sweep (P-13)', async () => {
    const email = `job-${Date.now()}@example.com`;
    const subject = keyed()('recipient', email);
    const mine = async () => (await attempts()).filter((row) => row.subject === subject);
    expect((await app.services.throttle.mayMail(email)).allowed).toBe(true);
    expect(await mine()).toHaveLength(1);
    clock += 2 * HOUR;
    const jobs = startJobs({ services: app.services, config: app.config, logger: createLogger('silent') });
    try {
      for (let i = 0; i < 200 && (await mine()).length > 0; i += 1) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await jobs.stop();
      clock -= 2 * HOUR;
    }
    const [job] = rowsOf<{ run_count: number }>(await db().execute(sql`select run_count from job_schedule where name = 'auth-attempts-sweep'`));
    expect({ attempts: await mine(), ran: Number(job?.run_count ?? 0) }).toEqual({ attempts: [], ran: 1 });
  });
});
