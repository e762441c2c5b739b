import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { createSessionTokens, sessionEnded } from './sessions.js';

const claims = { userId: '11111111-1111-4111-8111-111111111111', workspaceId: '22222222-2222-4222-8222-222222222222', sessionVersion: 0, membership: '1796549566822123' };
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

describe('session version (claim sv)', () => {
  const hs = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: 600 });

  it('round-trips the version; a token from before versions (no sv) counts as 0; a malformed one is refused', () => {
    expect(hs.verify(hs.sign({ ...claims, sessionVersion: 7 })).sessionVersion).toBe(7);
    const legacy = jwt.sign({ wid: claims.workspaceId }, 's'.repeat(40), { algorithm: 'HS256', subject: claims.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api' });
    expect(hs.verify(legacy).sessionVersion).toBe(0);
    const odd = jwt.sign({ wid: claims.workspaceId, sv: '1' }, 's'.repeat(40), { algorithm: 'HS256', subject: claims.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api' });
    expect(codeOf(() => hs.verify(odd))).toBe('invalid_token');
  });
});

describe('membership (claim mbr)', () => {
  const hs = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: 600 });
  const signed = (extra: object) => jwt.sign({ wid: claims.workspaceId, ...extra }, 's'.repeat(40), { algorithm: 'HS256', subject: claims.userId, issuer: 'inboxtrail', audience: 'inboxtrail-api' });

  it('round-trips the membership stamp exactly; a token from before (no mbr) names none; a malformed one is refused', () => {
    expect(hs.verify(hs.sign(claims)).membership).toBe('1796549566822123');
    expect(hs.verify(signed({ sv: 0 })).membership).toBeUndefined();
    expect(codeOf(() => hs.verify(signed({ mbr: 1796549566822123 })))).toBe('invalid_token');
  });
});

describe('account closure (sessions_not_before)', () => {
  const hs = createSessionTokens({ algorithm: 'HS256', secret: 's'.repeat(40), ttlSeconds: 600 });

  it('a session issued before the closure has ended; no closure ends nothing', () => {
    const session = hs.verify(hs.sign(claims));
    expect(sessionEnded(session, new Date(session.issuedAt.getTime() + 1000))).toBe(true);
    expect(sessionEnded(session, session.issuedAt)).toBe(false);
    expect(sessionEnded(session, null)).toBe(false);
  });
});
