import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TokenDecryptError, createTokenCipher, type EncryptionKey } from './token-cipher.js';

const v1: EncryptionKey = { version: 'v1', key: randomBytes(32) };
const v2: EncryptionKey = { version: 'v2', key: randomBytes(32) };
const REFRESH_TOKEN = '1//0gRefreshTokenThatMustNeverLeak-abcdefghijklmnop';
const CONTEXT = 'mailbox:42:refresh';

function expectDecryptFailure(run: () => unknown, sealed: string, reason?: TokenDecryptError['reason']): TokenDecryptError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TokenDecryptError);
  const error = caught as TokenDecryptError;
  if (reason) expect(error.reason).toBe(reason);
  for (const rendered of [error.message, String(error), JSON.stringify(error)]) {
    expect(rendered).not.toContain(REFRESH_TOKEN);
    for (const part of sealed.split('.').slice(1)) if (part.length >= 8) expect(rendered).not.toContain(part);
  }
  return error;
}

describe('createTokenCipher', () => {
  it('round-trips a token in the documented format', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    expect(cipher.decrypt(sealed, CONTEXT)).toBe(REFRESH_TOKEN);
  });

  it('round-trips empty and non-ASCII text', () => {
    const cipher = createTokenCipher([v1]);
    for (const plaintext of ['', 'jeton été ✉️ 令牌']) {
      expect(cipher.decrypt(cipher.encrypt(plaintext, CONTEXT), CONTEXT)).toBe(plaintext);
    }
  });

  it('gives a different ciphertext each time for the same token', () => {
    const cipher = createTokenCipher([v1]);
    const first = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    const second = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    expect(first).not.toBe(second);
    expect(first.split('.')[1]).not.toBe(second.split('.')[1]);
  });

  it('contains the token neither plainly nor base64-encoded', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    const plain = Buffer.from(REFRESH_TOKEN);
    for (const encoded of [REFRESH_TOKEN, plain.toString('base64'), plain.toString('base64url'), plain.toString('hex')]) {
      expect(sealed).not.toContain(encoded.slice(0, 16));
    }
    const decodedParts = sealed.split('.').slice(1).map((p) => Buffer.from(p, 'base64url'));
    for (const part of decodedParts) expect(part.includes(plain.subarray(0, 8))).toBe(false);
  });

  it('refuses a ciphertext moved to another row or column', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    expectDecryptFailure(() => cipher.decrypt(sealed, 'mailbox:43:refresh'), sealed, 'authentication_failed');
    expectDecryptFailure(() => cipher.decrypt(sealed, 'mailbox:42:access'), sealed, 'authentication_failed');
  });

  it('refuses every single-character edit of the stored string', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt('ya29.short-lived-access-token', CONTEXT);
    for (let i = 0; i < sealed.length; i++) {
      const replacement = sealed[i] === 'A' ? 'B' : 'A';
      const edited = sealed.slice(0, i) + replacement + sealed.slice(i + 1);
      expect(() => cipher.decrypt(edited, CONTEXT), `edit at ${i}`).toThrow(TokenDecryptError);
    }
  });

  it('refuses every flipped bit in the IV, tag and ciphertext', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt('ya29.token', CONTEXT);
    const [version, ...parts] = sealed.split('.');
    parts.forEach((part, index) => {
      const bytes = Buffer.from(part, 'base64url');
      for (let bit = 0; bit < bytes.length * 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const edited = [version, ...parts.map((p, i) => (i === index ? flipped.toString('base64url') : p))].join('.');
        expect(() => cipher.decrypt(edited, CONTEXT), `part ${index} bit ${bit}`).toThrow(TokenDecryptError);
      }
    });
  });

  it('refuses a truncated or extended value', () => {
    const cipher = createTokenCipher([v1]);
    const sealed = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    expectDecryptFailure(() => cipher.decrypt(sealed.slice(0, -2), CONTEXT), sealed);
    expectDecryptFailure(() => cipher.decrypt(`${sealed}AA`, CONTEXT), sealed);
    expectDecryptFailure(() => cipher.decrypt(`${sealed}.x`, CONTEXT), sealed, 'malformed');
    expectDecryptFailure(() => cipher.decrypt('', CONTEXT), sealed, 'malformed');
  });

  it('keeps decrypting old rows after a key is appended, and knows which are due for re-encryption', () => {
    const before = createTokenCipher([v1]);
    const old = before.encrypt(REFRESH_TOKEN, CONTEXT);
    expect(before.isCurrent(old)).toBe(true);

    const after = createTokenCipher([v1, v2]);
    expect(after.currentVersion).toBe('v2');
    expect(after.decrypt(old, CONTEXT)).toBe(REFRESH_TOKEN);
    expect(after.isCurrent(old)).toBe(false);

    const renewed = after.encrypt(after.decrypt(old, CONTEXT), CONTEXT);
    expect(renewed.startsWith('v2.')).toBe(true);
    expect(after.isCurrent(renewed)).toBe(true);
    expect(after.decrypt(renewed, CONTEXT)).toBe(REFRESH_TOKEN);
  });

  it('fails clearly on a version that is not configured, without echoing anything', () => {
    const sealed = createTokenCipher([v1, v2]).encrypt(REFRESH_TOKEN, CONTEXT);
    const onlyOld = createTokenCipher([v1]);
    const error = expectDecryptFailure(() => onlyOld.decrypt(sealed, CONTEXT), sealed, 'unknown_version');
    expect(error.message).toMatch(/not configured/);
    expect(onlyOld.isCurrent(sealed)).toBe(false);
  });

  it('does not echo a plaintext token stored by mistake where a ciphertext belongs', () => {
    const cipher = createTokenCipher([v1]);
    const error = expectDecryptFailure(() => cipher.decrypt(REFRESH_TOKEN, CONTEXT), REFRESH_TOKEN, 'malformed');
    expect(error.message).not.toContain('1//');
    expect(cipher.isCurrent(REFRESH_TOKEN)).toBe(false);
  });

  it('refuses a right version name with the wrong key bytes', () => {
    const sealed = createTokenCipher([v1]).encrypt(REFRESH_TOKEN, CONTEXT);
    const impostor = createTokenCipher([{ version: 'v1', key: randomBytes(32) }]);
    expectDecryptFailure(() => impostor.decrypt(sealed, CONTEXT), sealed, 'authentication_failed');
  });

  it('rejects bad key lists and an empty context up front', () => {
    expect(() => createTokenCipher([])).toThrow(TypeError);
    expect(() => createTokenCipher([{ version: 'v1', key: randomBytes(16) }])).toThrow(/32 bytes/);
    expect(() => createTokenCipher([v1, { version: 'v1', key: randomBytes(32) }])).toThrow(/twice/);
    expect(() => createTokenCipher([{ version: 'v.1', key: randomBytes(32) }])).toThrow(TypeError);
    const cipher = createTokenCipher([v1]);
    expect(() => cipher.encrypt(REFRESH_TOKEN, '')).toThrow(TypeError);
  });

  it('is not affected by the caller changing its key buffer later', () => {
    const key = randomBytes(32);
    const cipher = createTokenCipher([{ version: 'v1', key }]);
    const sealed = cipher.encrypt(REFRESH_TOKEN, CONTEXT);
    key.fill(0);
    expect(cipher.decrypt(sealed, CONTEXT)).toBe(REFRESH_TOKEN);
  });
});
