import jwt from 'jsonwebtoken';
import type { Config } from '../config.js';

/**
 * JWTs signed with the service's key for one purpose each (sessions, OAuth state…):
 * the audience keeps a token of one purpose from being accepted for another, and the
 * algorithm is pinned on both sides, so a token cannot talk its way into `none` or
 * into HS256-with-the-public-key.
 */
export function createSignedTokens(options: Config['jwt'], purpose: { audience: string; ttlSeconds: number }) {
  const signingKey = options.algorithm === 'HS256' ? options.secret : options.privateKey;
  const verifyingKey = options.algorithm === 'HS256' ? options.secret : options.publicKey;
  const ISSUER = 'inboxtrail';

  return {
    sign(claims: Record<string, unknown>, subject: string, jwtid?: string): string {
      return jwt.sign(claims, signingKey, {
        algorithm: options.algorithm,
        subject,
        issuer: ISSUER,
        audience: purpose.audience,
        expiresIn: purpose.ttlSeconds,
        ...(jwtid ? { jwtid } : {}),
      });
    },

    /** Throws jsonwebtoken's errors (TokenExpiredError for an expired one). */
    verify(token: string): jwt.JwtPayload {
      const payload = jwt.verify(token, verifyingKey, { algorithms: [options.algorithm], issuer: ISSUER, audience: purpose.audience });
      if (typeof payload === 'string' || typeof payload.sub !== 'string') throw new jwt.JsonWebTokenError('malformed claims');
      return payload;
    },
  };
}

export const isExpiredTokenError = (error: unknown) => error instanceof jwt.TokenExpiredError;
