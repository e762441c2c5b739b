import { createHmac } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { and, eq, gt, inArray, lt, notInArray, sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { authAttempts } from '../db/schema.js';
import { TooManyRequestsError } from '../errors.js';
import { ipv6ToBigInt, normalizeIp } from '../tracking/ip.js';

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
 *  - mail to one address: account mail an hour, and confirmations that undo a recipient's
 *    opt-out a day (mayMail, mayMailResubscribe).
 * Subjects are stored as keyed hashes (subjectHasher), and every row is deleted once its kind's
 * window has passed (sweepExpired, an hourly job): the table is a counter, not a log of who
 * tried what, and nothing in it outlives the window it is counted in.
 */

export interface ThrottleLimits {
  login: { maxPerAccount: number; maxPerAddress: number; windowSeconds: number; addressWindowSeconds: number };
  signup: { maxPerAddress: number; windowSeconds: number };
}

/**
 * Confirmation codes and notes mailed to one address (signups, invitations accepted for it), at
 * most this many an hour, whoever asks and from however many client addresses: nobody can use
 * us to flood an address. Past it the request is answered as always and nothing is mailed.
 */
const ACCOUNT_MAILS_PER_RECIPIENT = 5;
const ACCOUNT_MAIL_WINDOW_SECONDS = 3600;
/**
 * Confirmations that undo a recipient's opt-out (suppression/resubscribe.service.ts), at most
 * this many a day to one address, whoever asks through whichever workspace's link: the person
 * opted out, so strangers holding their old mail must not be able to keep mailing them. Each
 * mail's link works for a day, so one is all the owner of the address needs.
 */
const RESUBSCRIBE_MAILS_PER_RECIPIENT = 3;
const RESUBSCRIBE_MAIL_WINDOW_SECONDS = 24 * 3600;

/**
 * Requests for a new login address one user makes an hour (profile.ts): each mails an address
 * the user typed in, so each address's limit above is not enough to stop one account from
 * reaching a list of strangers.
 */
export const EMAIL_CHANGES_PER_USER = 10;
const EMAIL_CHANGE_WINDOW_SECONDS = 3600;

type SubjectKind = 'account' | 'address' | 'device' | 'recheck' | 'recipient' | 'user';

/**
 * HMAC-SHA256 of `kind:value` under a key derived from SUPPRESSION_HASH_KEY for this purpose
 * alone. Subjects are addresses, client IPs and device ids: a bare SHA-256 of them is confirmed
 * by hashing a list of candidates (P-13: a closed account's address must not be matchable after
 * the purge), a keyed one only by who holds the key. The purpose key keeps these subjects
 * apart from the address hashes kept for good (suppressions, contacts). Changing the key only
 * resets the counts of the windows then open.
 */
export function subjectHasher(secret: string) {
  const key = createHmac('sha256', secret).update('inboxtrail:auth-attempts:subject').digest();
  return (kind: SubjectKind, value: string) => createHmac('sha256', key).update(`${kind}:${value}`).digest('hex');
}

/**
 * The network a client address is counted under: an IPv4 address as itself (also when a
 * dual-stack socket or a proxy writes it as IPv4-mapped IPv6), an IPv6 address by its /64.
 * A /64 is what one host, one home or one cloud VM is given: counted per address, its owner
 * could rotate through 2^64 of them and never meet the per-address limit. Anything that is not
 * an address is counted as written.
 */
export function clientNetwork(address: string): string {
  const ip = normalizeIp(address);
  if (!ip) return address;
  if (!isIPv6(ip)) return ip;
  return `${(ipv6ToBigInt(ip) >> 64n).toString(16).padStart(16, '0')}::/64`;
}

/** `undo` takes the count back (a mail that was not sent after all). */
export interface MailQuota {
  allowed: boolean;
  undo: () => Promise<void>;
}

/** `subjectKey`: the server secret subjects are keyed under (SUPPRESSION_HASH_KEY, see subjectHasher). */
export function createAuthThrottle(db: Db, limits: ThrottleLimits, subjectKey: string, now: () => Date = () => new Date()) {
  const subjectOf = subjectHasher(subjectKey);
  /**
   * How long each kind's rows count: the longest window any limit reads them in. The one place
   * that says it, so the sweep deletes a row as soon as no limit can count it any more.
   */
  const windowSecondsOf = {
    login: Math.max(limits.login.windowSeconds, limits.login.addressWindowSeconds),
    signup: limits.signup.windowSeconds,
    mail: ACCOUNT_MAIL_WINDOW_SECONDS,
    'resubscribe-mail': RESUBSCRIBE_MAIL_WINDOW_SECONDS,
    'email-change': EMAIL_CHANGE_WINDOW_SECONDS,
  };
  type Kind = keyof typeof windowSecondsOf;
  const before = (seconds: number) => new Date(now().getTime() - seconds * 1000);

  async function record(kind: Kind, subjects: string[]): Promise<string[]> {
    const rows = await db
      .insert(authAttempts)
      .values(subjects.map((subject) => ({ kind, subject, at: now() })))
      .returning({ id: authAttempts.id });
    return rows.map((r) => r.id);
  }

  async function countSince(kind: Kind, subject: string, windowSeconds: number): Promise<number> {
    const [row] = await db
      .select({ n: sql<number>`count(*)::int` })
      .from(authAttempts)
      .where(and(eq(authAttempts.kind, kind), eq(authAttempts.subject, subject), gt(authAttempts.at, before(windowSeconds))));
    return Number(row?.n ?? 0);
  }

  /** A window that refuses this attempt (429) once it holds more than `max` of the subject's. */
  interface Limit {
    subject: string;
    max: number;
    windowSeconds: number;
    message: string;
  }

  /**
   * Records one attempt under each subject (`counted`: recorded, never refusing by itself) and
   * refuses it past any limit; resolves to a release that deletes this attempt's records (a
   * success never counts against anyone).
   */
  async function admit(kind: Kind, limited: Limit[], counted: string[] = []): Promise<() => Promise<void>> {
    const ids = await record(kind, [...limited.map((l) => l.subject), ...counted]);
    const counts = await Promise.all(limited.map((l) => countSince(kind, l.subject, l.windowSeconds)));
    limited.forEach((limit, i) => {
      if (counts[i]! > limit.max) throw new TooManyRequestsError(limit.message, limit.windowSeconds);
    });
    return async () => {
      await db.delete(authAttempts).where(inArray(authAttempts.id, ids));
    };
  }

  /** Counts a mail to `recipient` under `kind`; refused (and not counted) past `max` in the window. */
  async function mayMailWithin(kind: Kind, recipient: string, max: number, windowSeconds: number): Promise<MailQuota> {
    const subject = subjectOf('recipient', recipient);
    const [id] = await record(kind, [subject]);
    const undo = async () => {
      await db.delete(authAttempts).where(eq(authAttempts.id, id!));
    };
    if ((await countSince(kind, subject, windowSeconds)) <= max) return { allowed: true, undo };
    await undo();
    return { allowed: false, undo };
  }

  const { login } = limits;
  const perAccount = (subject: string, message: string): Limit => ({ subject, max: login.maxPerAccount, windowSeconds: login.windowSeconds, message });
  const perAddress = (clientAddress: string): Limit => ({
    subject: subjectOf('address', clientNetwork(clientAddress)),
    max: login.maxPerAddress,
    windowSeconds: login.addressWindowSeconds,
    message: 'Too many login attempts from your network; try again later',
  });

  return {
    /**
     * Deletes every attempt past its kind's window (jobs.ts, hourly), and any row of a kind no
     * longer written once past the longest window: however few attempts come in after it, no
     * row outlives its window by more than a sweep period. Resolves to how many went.
     */
    async sweepExpired(): Promise<number> {
      const kinds = Object.entries(windowSecondsOf);
      let deleted = 0;
      for (const [kind, seconds] of kinds) {
        deleted += (await db.delete(authAttempts).where(and(eq(authAttempts.kind, kind), lt(authAttempts.at, before(seconds)))).returning({ id: authAttempts.id })).length;
      }
      const longest = Math.max(...kinds.map(([, seconds]) => seconds));
      const unknown = and(notInArray(authAttempts.kind, kinds.map(([kind]) => kind)), lt(authAttempts.at, before(longest)));
      deleted += (await db.delete(authAttempts).where(unknown).returning({ id: authAttempts.id })).length;
      return deleted;
    },

    /**
     * Counts this login attempt and refuses it (429) when either window is full; with
     * `knownDevice` (a device id from a verified device token) the device's window only.
     * Returns a release function to call after a successful login.
     */
    admitLogin(email: string, clientAddress: string, knownDevice?: string): Promise<() => Promise<void>> {
      if (knownDevice !== undefined) return admit('login', [perAccount(subjectOf('device', knownDevice), 'Too many login attempts from this device; try again later')]);
      return admit('login', [perAccount(subjectOf('account', email), 'Too many login attempts for this account; try again later'), perAddress(clientAddress)]);
    },

    /**
     * A signed-in person's password re-check (password-recheck.ts). Counted like a login on the
     * account and the client address (so a stolen session's guesses hold strangers' logins too),
     * but refused past the account's limit of re-checks in this session (`sessionKey`:
     * AuthContext.session.key), or the address's limit (sessions stolen from many accounts,
     * guessing from one place). Per session, not per person: a session is only had by proving
     * the password (or a new device's mailed code), so a thief holding one gets that one's
     * guesses, and the owner signed in elsewhere (a known device's login is not held by the
     * account's window) can still change the password, which ends the thief's session. Nor do
     * strangers' wrong logins, which lock the account's logins, count here.
     */
    admitPasswordRecheck(user: { email: string }, sessionKey: string, clientAddress: string): Promise<() => Promise<void>> {
      return admit('login', [perAccount(subjectOf('recheck', sessionKey), 'Too many wrong passwords; try again later'), perAddress(clientAddress)], [subjectOf('account', user.email)]);
    },

    /**
     * Whether account mail may go to this address now (ACCOUNT_MAILS_PER_RECIPIENT); counts it
     * when so, and `undo` takes the count back (a mail that was not sent after all).
     */
    mayMail(recipient: string): Promise<MailQuota> {
      return mayMailWithin('mail', recipient, ACCOUNT_MAILS_PER_RECIPIENT, ACCOUNT_MAIL_WINDOW_SECONDS);
    },

    /** Whether a confirmation that undoes an opt-out may go to this address now (RESUBSCRIBE_MAILS_PER_RECIPIENT a day); like mayMail. */
    mayMailResubscribe(recipient: string): Promise<MailQuota> {
      return mayMailWithin('resubscribe-mail', recipient, RESUBSCRIBE_MAILS_PER_RECIPIENT, RESUBSCRIBE_MAIL_WINDOW_SECONDS);
    },

    /** A request for a new login address (profile.ts): refused (429) past EMAIL_CHANGES_PER_USER in the hour. */
    async admitEmailChange(userId: string): Promise<void> {
      await admit('email-change', [{ subject: subjectOf('user', userId), max: EMAIL_CHANGES_PER_USER, windowSeconds: EMAIL_CHANGE_WINDOW_SECONDS, message: 'Too many requests for a new login address; try again later' }]);
    },

    async admitSignup(clientAddress: string): Promise<void> {
      const { maxPerAddress, windowSeconds } = limits.signup;
      await admit('signup', [{ subject: subjectOf('address', clientNetwork(clientAddress)), max: maxPerAddress, windowSeconds, message: 'Too many signups from your network; try again later' }]);
    },
  };
}

export type AuthThrottle = ReturnType<typeof createAuthThrottle>;
