import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

/**
 * The sandbox's own Google-style signing key: it signs id tokens and Pub/Sub push
 * tokens, and its public half is served where Google serves its certs, so the
 * service verifies sandbox tokens with the same code it uses for Google's.
 */
export class SigningKeys {
  readonly kid: string;
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    // Google's kids are 40 hex characters; a digest of the key keeps ours stable for the key's life.
    this.kid = createHash('sha1').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
  }

  /** An RS256 JWT with a `kid` header, like Google's. */
  signJwt(claims: Record<string, unknown>): string {
    return signJwtWith(this.privateKey, this.kid, claims);
  }

  /**
   * `{kid: PEM}` as https://www.googleapis.com/oauth2/v1/certs. Google serves X.509
   * certificates; Node cannot mint one without a CA library, and the client's verifier
   * (crypto.createVerify) takes an SPKI public key PEM just as well.
   */
  pemCerts(): Record<string, string> {
    return { [this.kid]: this.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
  }

  /** `{keys:[JWK]}` as https://www.googleapis.com/oauth2/v3/certs. */
  jwks(): { keys: Record<string, unknown>[] } {
    return { keys: [{ ...this.publicKey.export({ format: 'jwk' }), kid: this.kid, alg: 'RS256', use: 'sig' }] };
  }
}

export function signJwtWith(privateKey: KeyObject | string, kid: string, claims: Record<string, unknown>): string {
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), privateKey).toString('base64url');
  return `${header}.${payload}.${signature}`;
}
