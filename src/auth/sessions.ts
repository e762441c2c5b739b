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

/** Bearer tokens of CRM users: short-lived, naming the user and the workspace they act in. */
export function createSessionTokens(options: Config['jwt']) {
  const tokens = createSignedTokens(options, { audience: 'inboxtrail-api', ttlSeconds: options.ttlSeconds });
  return {
    sign(claims: SessionClaims): string {
      return tokens.sign({ wid: claims.workspaceId }, claims.userId);
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
