import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppError } from '../errors.js';
import { createSessionTokens, sessionEnded, sessionsNotBeforeAfter } from './sessions.js';

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

describe('ending sessions at a password change, around second boundaries (JWT iat has whole seconds)', () => {
  const hs = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: 600 });
  afterEach(() => {
    vi.useRealTimers();
  });
  const at = (ms: number) => vi.setSystemTime(new Date(ms));
  const second = Date.UTC(2026, 11, 3, 9, 0, 0);

  // The change at the very start, the middle and the very end of a second; earlier tokens from that second and the one before.
  for (const changeOffset of [0, 1, 500, 999]) {
    it(`a change at +${changeOffset} ms ends every token issued up to it; tokens signed after it live`, () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      const earlier = [second - 1000, second - 1, second, second + changeOffset].map((ms) => {
        at(ms);
        return hs.verify(hs.sign(claims));
      });
      at(second + changeOffset);
      const notBefore = sessionsNotBeforeAfter(new Date());
      for (const session of earlier) expect(sessionEnded(session, notBefore), session.issuedAt.toISOString()).toBe(true);
      // The caller's successor, issued in the same millisecond as the change, and a login later in that second.
      for (const ms of [second + changeOffset, second + 999, second + 1000, second + 5000]) {
        at(ms);
        const session = hs.verify(hs.sign(claims, notBefore));
        expect(sessionEnded(session, notBefore), `signed at +${ms - second} ms`).toBe(false);
      }
    });
  }

  it('a token stamped ahead of the clock by the not-before instant still verifies and expires on time', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    at(second + 999);
    const notBefore = sessionsNotBeforeAfter(new Date());
    const token = hs.sign(claims, notBefore);
    const payload = jwt.decode(token) as jwt.JwtPayload;
    expect(payload.iat).toBe((second + 1000) / 1000);
    expect(payload.exp).toBe(payload.iat! + 600);
    expect(hs.verify(token).issuedAt).toEqual(notBefore);
    // No not-before (or an old one): the clock's own second, as before.
    expect((jwt.decode(hs.sign(claims, new Date(second - 60_000))) as jwt.JwtPayload).iat).toBe(second / 1000);
    expect((jwt.decode(hs.sign(claims)) as jwt.JwtPayload).iat).toBe(second / 1000);
  });

  it('no not-before ends nothing', () => {
    expect(sessionEnded(hs.verify(hs.sign(claims)), null)).toBe(false);
  });
});
