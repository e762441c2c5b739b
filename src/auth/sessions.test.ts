import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { createSessionTokens } from './sessions.js';

const claims = { userId: '11111111-1111-4111-8111-111111111111', workspaceId: '22222222-2222-4222-8222-222222222222' };
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as AppError).code;
  }
  return 'no error';
};

describe('session tokens', () => {
  const hs = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: 600 });

  it('round-trips the claims', () => {
    expect(hs.verify(hs.sign(claims))).toMatchObject(claims);
  });

  it('refuses a token signed with another secret, an alg=none token, and a tampered payload', () => {
    const other = createSessionTokens({ algorithm: 'HS256', secret: 'o'.repeat(40), ttlSeconds: 600 });
    expect(codeOf(() => hs.verify(other.sign(claims)))).toBe('invalid_token');
    const none = jwt.sign({ wid: claims.workspaceId }, '', { algorithm: 'none', subject: claims.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api' });
    expect(codeOf(() => hs.verify(none))).toBe('invalid_token');
    const [h, , s] = hs.sign(claims).split('.');
    const forged = Buffer.from(JSON.stringify({ sub: claims.userId, wid: 'someone-else', iss: 'inboxtrail', aud: 'inboxtrail-api' })).toString('base64url');
    expect(codeOf(() => hs.verify(`${h}.${forged}.${s}`))).toBe('invalid_token');
  });

  it('reports an expired token as such', () => {
    const expired = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: -10 });
    expect(codeOf(() => hs.verify(expired.sign(claims)))).toBe('token_expired');
  });

  it('RS256: verifies with the public key and refuses HS256 tokens forged with the public key', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    const rs = createSessionTokens({ algorithm: 'RS256', privateKey, publicKey, ttlSeconds: 600 });
    const token = rs.sign(claims);
    expect(jwt.decode(token, { complete: true })!.header.alg).toBe('RS256');
    expect(rs.verify(token)).toMatchObject(claims);
    // The classic confusion attack: HMAC-sign with the public key as the secret.
    const confused = createSessionTokens({ algorithm: 'HS256', secret: publicKey, ttlSeconds: 600 }).sign(claims);
    expect(codeOf(() => rs.verify(confused))).toBe('invalid_token');
  });
});
