import type { Config } from '../config.js';
import { UnauthorizedError } from '../errors.js';
import { createSignedTokens, isExpiredTokenError } from './signed-tokens.js';

export interface SessionClaims {
  userId: string;
  workspaceId: string;
}

/** What a verified session says, with when it was issued (closing an account refuses every older session). */
export interface VerifiedSession extends SessionClaims {
  issuedAt: Date;
}

/**
 * `users.sessions_not_before` for a password change at `at`: the first whole second after it.
 * A token's `iat` has whole seconds, so tokens issued in the second of the change carry the
 * same `iat` whether they came before or after it; refusing that whole second ends every token
 * issued up to the change, and `sign` stamps every later token of the user no earlier than this.
 */
export const sessionsNotBeforeAfter = (at: Date) => new Date((Math.floor(at.getTime() / 1000) + 1) * 1000);

/** A session issued before its user's `sessions_not_before` has ended (password change, account closure). */
export const sessionEnded = (session: VerifiedSession, notBefore: Date | null | undefined) =>
  !!notBefore && session.issuedAt.getTime() < notBefore.getTime();

/** Bearer tokens of CRM users: short-lived, naming the user and the workspace they act in. */
export function createSessionTokens(options: Config['jwt']) {
  const tokens = createSignedTokens(options, { audience: 'inboxtrail-api', ttlSeconds: options.ttlSeconds });
  return {
    /**
     * `notBefore` is the user's `sessions_not_before`: the token is stamped no earlier than it
     * (up to a second ahead of the clock), so a session issued after a password change is never
     * mistaken for one from before it.
     */
    sign(claims: SessionClaims, notBefore?: Date | null): string {
      const iat = Math.max(Math.floor(Date.now() / 1000), notBefore ? Math.ceil(notBefore.getTime() / 1000) : 0);
      return tokens.sign({ wid: claims.workspaceId, iat }, claims.userId);
    },

    verify(token: string): VerifiedSession {
      try {
        const payload = tokens.verify(token);
        if (typeof payload.wid !== 'string' || typeof payload.iat !== 'number') throw new Error('malformed claims');
        return { userId: payload.sub!, workspaceId: payload.wid, issuedAt: new Date(payload.iat * 1000) };
      } catch (error) {
        const expired = isExpiredTokenError(error);
        throw new UnauthorizedError(
          expired ? 'token_expired' : 'invalid_token',
          expired ? 'The session has expired; log in again' : 'The bearer token is not valid',
        );
      }
    },
  };
}

export type SessionTokens = ReturnType<typeof createSessionTokens>;
