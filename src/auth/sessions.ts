import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { UnauthorizedError } from '../errors.js';
import { createSignedTokens, isExpiredTokenError } from './signed-tokens.js';

export interface SessionClaims {
  userId: string;
  workspaceId: string;
  /**
   * users.session_version read together with the password hash (or user row) this session was
   * granted on; a password change raises the user's version, which ends the session (claim `sv`).
   */
  sessionVersion: number;
}

/** What a verified session says, with when it was issued (closing an account refuses every older session). */
export interface VerifiedSession extends SessionClaims {
  issuedAt: Date;
}

/** A session issued before its user's `sessions_not_before` has ended (account closure). */
export const sessionEnded = (session: Pick<VerifiedSession, 'issuedAt'>, notBefore: Date | null | undefined) =>
  !!notBefore && session.issuedAt.getTime() < notBefore.getTime();

/** Bearer tokens of CRM users: short-lived, naming the user and the workspace they act in. */
export function createSessionTokens(options: Config['jwt']) {
  const tokens = createSignedTokens(options, { audience: 'inboxtrail-api', ttlSeconds: options.ttlSeconds });
  return {
    /**
     * A random token id (`jti`): two sessions issued in the same second are two tokens, so each
     * is one session to what counts per session (AuthContext.session.key, the token's SHA-256).
     */
    sign(claims: SessionClaims): string {
      return tokens.sign({ wid: claims.workspaceId, sv: claims.sessionVersion }, claims.userId, randomUUID());
    },

    verify(token: string): VerifiedSession {
      try {
        const payload = tokens.verify(token);
        // Tokens signed before session versions existed carry no `sv`: they count as version 0,
        // the version every user started at, so they work until the user's next password change.
        const sv = payload.sv ?? 0;
        if (typeof payload.wid !== 'string' || typeof payload.iat !== 'number' || !Number.isSafeInteger(sv)) throw new Error('malformed claims');
        return { userId: payload.sub!, workspaceId: payload.wid, sessionVersion: sv as number, issuedAt: new Date(payload.iat * 1000) };
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
