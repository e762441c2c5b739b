import type { Config } from '../config.js';
import { UnauthorizedError } from '../errors.js';
import { createSignedTokens, isExpiredTokenError } from './signed-tokens.js';

export interface SessionClaims {
  userId: string;
  workspaceId: string;
}

/** Bearer tokens of CRM users: short-lived, naming the user and the workspace they act in. */
export function createSessionTokens(options: Config['jwt']) {
  const tokens = createSignedTokens(options, { audience: 'inboxtrail-api', ttlSeconds: options.ttlSeconds });
  return {
    sign(claims: SessionClaims): string {
      return tokens.sign({ wid: claims.workspaceId }, claims.userId);
    },

    verify(token: string): SessionClaims {
      try {
        const payload = tokens.verify(token);
        if (typeof payload.wid !== 'string') throw new Error('malformed claims');
        return { userId: payload.sub!, workspaceId: payload.wid };
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
