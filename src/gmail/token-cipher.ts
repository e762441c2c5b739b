import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * OAuth tokens at rest (invariant 6). Each value is sealed with AES-256-GCM under the newest
 * key and names the key version it used, so keys rotate without downtime: append a key, and
 * old rows keep decrypting while `isCurrent` finds the ones to re-encrypt.
 *
 * The caller's `context` (e.g. `mailbox:<id>:refresh`) is bound in as associated data: a
 * ciphertext copied into another mailbox's row, or from the access to the refresh column,
 * no longer decrypts.
 */

/** AAD for each encrypted mailbox token: a ciphertext copied into another row or column does not decrypt. */
export const tokenContext = (mailboxId: string, which: 'refresh' | 'access') => `mailbox:${mailboxId}:${which}`;

export interface EncryptionKey {
  readonly version: string;
  readonly key: Buffer;
}

export type TokenDecryptFailure = 'malformed' | 'unknown_version' | 'authentication_failed';

/** Says why, never what: the message carries neither the ciphertext nor any part of it. */
export class TokenDecryptError extends Error {
  constructor(
    message = 'The stored token could not be decrypted',
    readonly reason: TokenDecryptFailure = 'malformed',
  ) {
    super(message);
    this.name = 'TokenDecryptError';
  }
}

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Versions are written before the first dot, so they can never contain one. */
const VERSION_SHAPE = /^[A-Za-z0-9_-]{1,32}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Base64url that re-encodes to itself. Node's decoder ignores stray characters and the spare
 * low bits of the last one, so without this check some edits would decrypt unchanged.
 */
function decodeStrictBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

interface SealedToken {
  version: string;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

function parseSealedToken(sealed: string): SealedToken | undefined {
  if (typeof sealed !== 'string') return undefined;
  const parts = sealed.split('.');
  if (parts.length !== 4) return undefined;
  const [version, ivText, tagText, ciphertextText] = parts as [string, string, string, string];
  if (!VERSION_SHAPE.test(version)) return undefined;
  const iv = decodeStrictBase64url(ivText);
  const tag = decodeStrictBase64url(tagText);
  const ciphertext = decodeStrictBase64url(ciphertextText);
  if (!iv || iv.length !== IV_BYTES || !tag || tag.length !== TAG_BYTES || !ciphertext) return undefined;
  return { version, iv, tag, ciphertext };
}

function requireContext(context: string): Buffer {
  // An empty context would silently give up the row binding the format promises.
  if (typeof context !== 'string' || context.length === 0) throw new TypeError('a token cipher context is required');
  return Buffer.from(context, 'utf8');
}

export interface TokenCipherMethods {
  /** The version the next `encrypt` writes: the last configured key. */
  readonly currentVersion: string;
  /** AES-256-GCM under the current key with a fresh 12-byte IV; `context` is bound as associated data. */
  encrypt(plaintext: string, context: string): string;
  /** Picks the key by the version prefix; throws TokenDecryptError on unknown version, tampering or wrong context. */
  decrypt(ciphertext: string, context: string): string;
  /** Whether this value was written with the current key; false means it is due for re-encryption. */
  isCurrent(ciphertext: string): boolean;
}

export function createTokenCipher(keys: readonly EncryptionKey[]): TokenCipherMethods {
  if (keys.length === 0) throw new TypeError('at least one token encryption key is required');
  const keysByVersion = new Map<string, Buffer>();
  for (const { version, key } of keys) {
    if (!VERSION_SHAPE.test(version)) throw new TypeError(`token key version "${version}" must be letters, digits, _ or -`);
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) throw new TypeError(`token key ${version} must be exactly ${KEY_BYTES} bytes`);
    if (keysByVersion.has(version)) throw new TypeError(`token key version ${version} appears twice`);
    // A private copy: a caller zeroing or reusing its buffer must not change our keys.
    keysByVersion.set(version, Buffer.from(key));
  }
  const current = keys[keys.length - 1]!.version;
  const currentKey = keysByVersion.get(current)!;

  return Object.freeze({
    currentVersion: current,

    encrypt(plaintext: string, context: string): string {
      if (typeof plaintext !== 'string') throw new TypeError('only strings can be encrypted');
      const aad = requireContext(context);
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv(ALGORITHM, currentKey, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad);
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [current, iv.toString('base64url'), tag.toString('base64url'), ciphertext.toString('base64url')].join('.');
    },

    decrypt(sealed: string, context: string): string {
      const aad = requireContext(context);
      const parsed = parseSealedToken(sealed);
      if (!parsed) throw new TokenDecryptError('The stored token is not in the expected format', 'malformed');
      const key = keysByVersion.get(parsed.version);
      if (!key) {
        throw new TokenDecryptError(
          'The stored token was encrypted with a key that is not configured (check TOKEN_ENCRYPTION_KEYS)',
          'unknown_version',
        );
      }
      try {
        const decipher = createDecipheriv(ALGORITHM, key, parsed.iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(aad);
        decipher.setAuthTag(parsed.tag);
        return Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]).toString('utf8');
      } catch {
        // Tampering, a wrong key under a right version name, or a row moved to another context.
        throw new TokenDecryptError('The stored token failed its integrity check', 'authentication_failed');
      }
    },

    isCurrent(sealed: string): boolean {
      return parseSealedToken(sealed)?.version === current;
    },
  });
}

export type TokenCipher = ReturnType<typeof createTokenCipher>;
