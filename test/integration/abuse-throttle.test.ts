import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/* Issue 9, part 5: password spraying, account enumeration and X-Forwarded-For rotation. */

let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  // Two processes' worth of app over ONE database: the limits must hold across both.
  const env = { TRUST_PROXY: 'false', LOGIN_MAX_ATTEMPTS_PER_ADDRESS: '20', SIGNUP_MAX_PER_ADDRESS: '200' };
  a = await startTestApp({ env });
  b = await startTestApp({ env, database: a.database });
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

const login = (app: TestApp, email: string, password: string, forwardedFor?: string) =>
  app.api('POST', '/api/auth/login', { json: { email, password }, headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {} });

describe('login throttling', () => {
  it('spraying 60 accounts from one address, alternating processes and rotating X-Forwarded-For, meets 429 after the per-address limit', async () => {
    const victims = await Promise.all(Array.from({ length: 3 }, () => signUp(a)));
    const statuses: number[] = [];
    for (let i = 0; i < 60; i += 1) {
      const email = i < 3 ? victims[i]!.email : `sprayed${i}@example.com`;
      const res = await login(i % 2 ? a : b, email, 'Summer2026!', `203.0.113.${i}`);
      statuses.push(res.status);
      if (res.status === 429) expect(res.headers.get('retry-after')).toBeTruthy();
    }
    expect(statuses.slice(0, 20).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(20).every((s) => s === 429)).toBe(true);
    // Even the right password waits out the window from that address.
    expect((await login(a, victims[0]!.email, victims[0]!.password)).status).toBe(429);
  });

  it('an IPv6 client is counted by its /64 (what one host is given): rotating the host bits, or an IPv4 client written as IPv4-mapped IPv6, is the same network', async () => {
    const app = await startTestApp({ env: { TRUST_PROXY: 'loopback', LOGIN_MAX_ATTEMPTS_PER_ADDRESS: '5' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i += 1) {
        // What a trusted proxy says the client was: one /64, a different address each time (as any IPv6 host can).
        const res = await login(app, `v6-sprayed${i}@example.com`, 'Summer2026!', `2001:db8:1:2:${(i + 1).toString(16)}:${i}::${i + 7}`);
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
      // Another /64 is another network.
      expect((await login(app, 'v6-other@example.com', 'Summer2026!', '2001:db8:1:3::1')).status).toBe(401);

      const mapped: number[] = [];
      for (let i = 0; i < 6; i += 1) {
        const forwarded = i % 2 ? '198.51.100.9' : i % 4 ? '::ffff:198.51.100.9' : '::ffff:c633:6409';
        mapped.push((await login(app, `v4-sprayed${i}@example.com`, 'Summer2026!', forwarded)).status);
      }
      expect(mapped).toEqual([401, 401, 401, 401, 401, 429]);
    } finally {
      await app.close();
    }
  });

  it('per account across processes: a guesser spread over two processes is stopped at LOGIN_MAX_FAILURES', async () => {
    const app = await startTestApp({ env: { TRUST_PROXY: 'loopback', LOGIN_MAX_FAILURES: '4' } });
    const other = await startTestApp({ env: { TRUST_PROXY: 'loopback', LOGIN_MAX_FAILURES: '4' }, database: app.database });
    try {
      const user = await signUp(app);
      // TRUST_PROXY=loopback: the operator says a proxy on loopback names the client, so each guess has its own address.
      const statuses = [];
      for (let i = 0; i < 6; i += 1) statuses.push((await login(i % 2 ? app : other, user.email, `wrong ${i}`, `198.51.100.${i}`)).status);
      expect(statuses).toEqual([401, 401, 401, 401, 429, 429]);
      // Another account from the same addresses is not locked by the first one's failures.
      const second = await signUp(app);
      expect((await login(other, second.email, second.password, '198.51.100.1')).status).toBe(200);
    } finally {
      await other.close();
      await app.close();
    }
  });

  it('an unknown account takes as long as a wrong password (decoy hash)', async () => {
    const app = await startTestApp();
    try {
      const user = await signUp(app);
      const time = async (email: string) => {
        const started = performance.now();
        expect((await login(app, email, 'not the password')).status).toBe(401);
        return performance.now() - started;
      };
      const known: number[] = [];
      const unknown: number[] = [];
      for (let i = 0; i < 4; i += 1) {
        known.push(await time(user.email));
        unknown.push(await time(`nobody${i}@example.com`));
      }
      const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      expect(median(unknown)).toBeGreaterThan(median(known) * 0.4);
    } finally {
      await app.close();
    }
  });
});

describe('signup throttling', () => {
  it('signups per client address are limited (429), whatever X-Forwarded-For says', async () => {
    const app = await startTestApp({ env: { TRUST_PROXY: 'false', SIGNUP_MAX_PER_ADDRESS: '3' } });
    try {
      const statuses = [];
      for (let i = 0; i < 5; i += 1) {
        const res = await app.api('POST', '/api/auth/signup', {
          json: { email: `burst${i}@example.com`, password: 'long enough password', workspaceName: 'W' },
          headers: { 'x-forwarded-for': `192.0.2.${i}` },
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([202, 202, 202, 429, 429]);
    } finally {
      await app.close();
    }
  });
});
