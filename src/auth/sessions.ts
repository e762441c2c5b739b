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
  /**
   * The membership it was issued for, as `membershipStamp` (auth.repo.ts) reads it: removed and
   * invited back, the person has another membership, and this session ended with the first one
   * (claim `mbr`). Compared for equality with the stored value, never as a time.
   */
  membership: string;
}

/** Signs a bearer session token for a user in a workspace, at a session version, in a membership (its stamp). */
export type IssueSession = (userId: string, workspaceId: string, sessionVersion: number, membership: string) => string;

/** What a verified session says, with when it was issued (closing an account refuses every older session). */
export interface VerifiedSession extends Omit<SessionClaims, 'membership'> {
  issuedAt: Date;
  /** Undefined for a token signed before tokens named their membership (see `verify`). */
  membership: string | undefined;
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
      return tokens.sign({ wid: claims.workspaceId, sv: claims.sessionVersion, mbr: claims.membership }, claims.userId, randomUUID());
    },

    verify(token: string): VerifiedSession {
      try {
        const payload = tokens.verify(token);
        // Tokens signed before session versions existed carry no `sv`: they count as version 0,
        // the version every user started at, so they work until the user's next password change.
        const sv = payload.sv ?? 0;
        // Tokens signed before they named their membership carry no `mbr`: accepted for the
        // membership there is now, until they expire (JWT_TTL_SECONDS), like before.
        const mbr = payload.mbr;
        if (typeof payload.wid !== 'string' || typeof payload.iat !== 'number' || !Number.isSafeInteger(sv) || (mbr !== undefined && typeof mbr !== 'string')) {
          throw new Error('malformed claims');
        }
        return { userId: payload.sub!, workspaceId: payload.wid, sessionVersion: sv as number, membership: mbr, issuedAt: new Date(payload.iat * 1000) };
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
