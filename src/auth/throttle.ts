import { createHash } from 'node:crypto';
import { and, eq, gt, inArray, lt, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { authAttempts } from '../db/schema.js';
import { TooManyRequestsError } from '../errors.js';

/*
 * Abuse limits for the public auth routes, shared by every process through PostgreSQL:
 *  - login: attempts per account (the address typed in, known or not) and per client
 *    address, each in its own window. An attempt is recorded BEFORE the password is
 *    checked and the count includes it, so concurrent guesses cannot all slip under the
 *    limit; a successful login deletes its own attempt (successes never lock anyone out).
 *    From a known device (login-devices.ts: it signed in to this account before) attempts
 *    are counted per device instead, with the account's limit: a stranger's failures,
 *    which lock the account and the stranger's network, never lock its owner's devices.
 *  - signup: requests per client address.
 * Subjects are stored hashed: the table is a counter, not a log of who tried what.
 */

export interface ThrottleLimits {
  login: { maxPerAccount: number; maxPerAddress: number; windowSeconds: number; addressWindowSeconds: number };
  signup: { maxPerAddress: number; windowSeconds: number };
}

const subjectOf = (kind: 'account' | 'address' | 'device' | 'recheck', value: string) => createHash('sha256').update(`${kind}:${value}`).digest('hex');

export function createAuthThrottle(db: Db, limits: ThrottleLimits, now: () => Date = () => new Date()) {
  const longestWindowMs = 1000 * Math.max(limits.login.windowSeconds, limits.login.addressWindowSeconds, limits.signup.windowSeconds);
  let sinceSweep = 0;

  async function record(kind: string, subjects: string[]): Promise<string[]> {
    const rows = await db
      .insert(authAttempts)
      .values(subjects.map((subject) => ({ kind, subject, at: now() })))
      .returning({ id: authAttempts.id });
    // Expired rows go as new ones come; a bounded delete every so often keeps the table small.
    sinceSweep += 1;
    if (sinceSweep >= 50) {
      sinceSweep = 0;
      await db.delete(authAttempts).where(lt(authAttempts.at, new Date(now().getTime() - longestWindowMs)));
    }
    return rows.map((r) => r.id);
  }

  async function countSince(kind: string, subject: string, windowSeconds: number): Promise<number> {
    const [row] = await db
      .select({ n: sql<number>`count(*)::int` })
      .from(authAttempts)
      .where(and(eq(authAttempts.kind, kind), eq(authAttempts.subject, subject), gt(authAttempts.at, new Date(now().getTime() - windowSeconds * 1000))));
    return Number(row?.n ?? 0);
  }

  return {
    /**
     * Counts this login attempt and refuses it (429) when either window is full; with
     * `knownDevice` (a device id from a verified device token) the device's window only.
     * Returns a release function to call after a successful login.
     */
    async admitLogin(email: string, clientAddress: string, knownDevice?: string): Promise<() => Promise<void>> {
      const { login } = limits;
      if (knownDevice !== undefined) {
        const device = subjectOf('device', knownDevice);
        const [deviceId] = await record('login', [device]);
        if ((await countSince('login', device, login.windowSeconds)) > login.maxPerAccount) {
          throw new TooManyRequestsError('Too many login attempts from this device; try again later', login.windowSeconds);
        }
        return async () => {
          await db.delete(authAttempts).where(eq(authAttempts.id, deviceId!));
        };
      }
      const account = subjectOf('account', email);
      const address = subjectOf('address', clientAddress);
      const [accountId, addressId] = await record('login', [account, address]);
      const [byAccount, byAddress] = await Promise.all([
        countSince('login', account, login.windowSeconds),
        countSince('login', address, login.addressWindowSeconds),
      ]);
      if (byAccount > login.maxPerAccount) throw new TooManyRequestsError('Too many login attempts for this account; try again later', login.windowSeconds);
      if (byAddress > login.maxPerAddress) throw new TooManyRequestsError('Too many login attempts from your network; try again later', login.addressWindowSeconds);
      return async () => {
        await db.delete(authAttempts).where(sql`${authAttempts.id} in (${accountId}::uuid, ${addressId}::uuid)`);
      };
    },

    /**
     * A signed-in person's password re-check (password-recheck.ts). Counted like a login on the
     * account and the client address (so a stolen session's guesses hold strangers' logins too),
     * but refused past the account's limit of re-checks by this user, or the address's limit
     * (sessions stolen from many accounts, guessing from one place): strangers' wrong passwords
     * elsewhere, which lock the account's logins, never keep its owner from changing the password.
     */
    async admitPasswordRecheck(user: { id: string; email: string }, clientAddress: string): Promise<() => Promise<void>> {
      const { login } = limits;
      const recheck = subjectOf('recheck', user.id);
      const address = subjectOf('address', clientAddress);
      const ids = await record('login', [recheck, subjectOf('account', user.email), address]);
      const [byUser, byAddress] = await Promise.all([countSince('login', recheck, login.windowSeconds), countSince('login', address, login.addressWindowSeconds)]);
      if (byUser > login.maxPerAccount) throw new TooManyRequestsError('Too many wrong passwords; try again later', login.windowSeconds);
      if (byAddress > login.maxPerAddress) throw new TooManyRequestsError('Too many login attempts from your network; try again later', login.addressWindowSeconds);
      return async () => {
        await db.delete(authAttempts).where(inArray(authAttempts.id, ids));
      };
    },

    async admitSignup(clientAddress: string): Promise<void> {
      const address = subjectOf('address', clientAddress);
      await record('signup', [address]);
      if ((await countSince('signup', address, limits.signup.windowSeconds)) > limits.signup.maxPerAddress) {
        throw new TooManyRequestsError('Too many signups from your network; try again later', limits.signup.windowSeconds);
      }
    },
  };
}

export type AuthThrottle = ReturnType<typeof createAuthThrottle>;
