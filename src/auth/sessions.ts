import jwt from 'jsonwebtoken';
import type { Config } from '../config.js';
import { UnauthorizedError } from '../errors.js';

export interface SessionClaims {
  userId: string;
  workspaceId: string;
}

const ISSUER = 'inboxtrail';
const AUDIENCE = 'inboxtrail-api';

/**
 * Signs and verifies the bearer tokens of CRM users. The algorithm is pinned on both
 * sides, so a token cannot talk its way into `none` or into HS256-with-the-public-key.
 */
export function createSessionTokens(options: Config['jwt']) {
  const signingKey = options.algorithm === 'HS256' ? options.secret : options.privateKey;
  const verifyingKey = options.algorithm === 'HS256' ? options.secret : options.publicKey;

  return {
    sign(claims: SessionClaims): string {
      return jwt.sign({ wid: claims.workspaceId }, signingKey, {
        algorithm: options.algorithm,
        subject: claims.userId,
        issuer: ISSUER,
        audience: AUDIENCE,
        expiresIn: options.ttlSeconds,
      });
    },

    verify(token: string): SessionClaims {
      try {
        const payload = jwt.verify(token, verifyingKey, {
          algorithms: [options.algorithm],
          issuer: ISSUER,
          audience: AUDIENCE,
        });
        if (typeof payload === 'string' || typeof payload.sub !== 'string' || typeof payload.wid !== 'string') {
          throw new Error('malformed claims');
        }
        return { userId: payload.sub, workspaceId: payload.wid };
      } catch (error) {
        const expired = error instanceof jwt.TokenExpiredError;
        throw new UnauthorizedError(
          expired ? 'token_expired' : 'invalid_token',
          expired ? 'The session has expired; log in again' : 'The bearer token is not valid',
        );
      }
    },
  };
}

export type SessionTokens = ReturnType<typeof createSessionTokens>;
