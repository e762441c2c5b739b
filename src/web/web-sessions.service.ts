import { createHash, randomBytes } from 'node:crypto';
import type { AuthContext, AuthService } from '../auth/auth.service.js';
import { UnauthorizedError } from '../errors.js';
import type { WebSessionsRepo } from './web-sessions.repo.js';

/** What a browser's session cookie resolves to. */
export type SessionLookup =
  | { state: 'none' }
  /** The cookie named a session that ended (expired, signed out elsewhere, membership removed). */
  | { state: 'ended' }
  | { state: 'active'; auth: AuthContext; expiresAt: Date };

/** A web session's `AuthContext.session.key`: this prefix and the row's id. */
const WEB_KEY_PREFIX = 'web:';

const hashCookieValue = (value: string) => createHash('sha256').update(value).digest('hex');
/** A cookie value is 32 random bytes in base64url; anything else is not worth a query. */
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

/**
 * Browser sessions: a random cookie value, its SHA-256 in web_sessions with the user, the
 * workspace and a fixed expiry. Who may do what is not stored here: the membership (and its
 * role) is re-read on every request through the auth service, exactly as for bearer tokens.
 */
export function createWebSessionsService(deps: { repo: WebSessionsRepo; auth: AuthService; ttlMs: number; now?: () => Date }) {
  const { repo, auth, ttlMs } = deps;
  const now = deps.now ?? (() => new Date());

  return {
    /**
     * Starts a session for a member who has just proven who they are; returns the cookie value
     * (shown to nobody else). `sessionVersion` is the version of what they proved it with (the
     * token of a sign-in, or a password change's new version): if a password change has raised
     * the user's version since, the row is dead from the start, even if inserted after the change.
     */
    async start(member: { userId: string; workspaceId: string; sessionVersion: number }): Promise<{ cookieValue: string; expiresAt: Date }> {
      const cookieValue = randomBytes(32).toString('base64url');
      const expiresAt = new Date(now().getTime() + ttlMs);
      await repo.deleteExpired(now());
      await repo.insert({ userId: member.userId, workspaceId: member.workspaceId, sessionVersion: member.sessionVersion, tokenHash: hashCookieValue(cookieValue), expiresAt });
      return { cookieValue, expiresAt };
    },

    async resolve(cookieValue: string | undefined): Promise<SessionLookup> {
      if (!cookieValue) return { state: 'none' };
      if (!COOKIE_VALUE.test(cookieValue)) return { state: 'ended' };
      const row = await repo.findByTokenHash(hashCookieValue(cookieValue));
      if (!row || row.expiresAt.getTime() <= now().getTime()) return { state: 'ended' };
      // A password change since the session started (another version) has ended it.
      const context = await auth.memberContext(row.userId, row.workspaceId, row.sessionVersion, `${WEB_KEY_PREFIX}${row.id}`);
      if (!context) return { state: 'ended' };
      return { state: 'active', auth: context, expiresAt: row.expiresAt };
    },

    /**
     * For work that outlasts its request (a CSV import, batch by batch): throws 401 `invalid_token`
     * once this browser session has ended — signed out, expired — or the membership or password
     * has (auth.recheck), so signing out stops such work the way removal does.
     */
    async recheck(caller: AuthContext): Promise<void> {
      const key = caller.session?.kind === 'web' ? caller.session.key : undefined;
      if (key && !(await repo.isLive(key.slice(WEB_KEY_PREFIX.length), now()))) throw new UnauthorizedError('invalid_token', 'The session has ended');
      await auth.recheck(caller);
    },

    async end(cookieValue: string | undefined): Promise<void> {
      if (cookieValue && COOKIE_VALUE.test(cookieValue)) await repo.deleteByTokenHash(hashCookieValue(cookieValue));
    },

    /** Ends every browser session of a user; account closure calls this inside its own flow. */
    async endAllForUser(userId: string): Promise<number> {
      return repo.deleteForUser(userId);
    },
  };
}

export type WebSessionsService = ReturnType<typeof createWebSessionsService>;
