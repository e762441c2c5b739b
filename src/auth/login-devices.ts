import { createHash, randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { createSignedTokens } from './signed-tokens.js';

/** How long a device stays known after its last successful sign-in (each sign-in renews it). */
export const LOGIN_DEVICE_TTL_SECONDS = 180 * 24 * 3600;

/*
 * Known devices (OWASP's "device cookies"): a successful login hands the client a signed token
 * naming this login address and a random device id. A later login that presents it, for the same
 * address, is throttled per device instead of per account (throttle.ts): a stranger's wrong
 * passwords can lock the account against unknown clients, never against the person's own
 * browser or CRM integration. The token's holder signed in with the password once, and its
 * own wrong passwords are counted and limited per device like an account's.
 * The token carries a hash of the address, not the address itself.
 */
export function createLoginDevices(jwt: Config['jwt']) {
  const tokens = createSignedTokens(jwt, { audience: 'inboxtrail-login-device', ttlSeconds: LOGIN_DEVICE_TTL_SECONDS });
  const subjectOf = (email: string) => createHash('sha256').update(`login-device:${email}`).digest('hex');
  return {
    /** A new device token for this (normalized) login address. */
    issue(email: string): string {
      return tokens.sign({}, subjectOf(email), randomUUID());
    },
    /** The device id the token names, when it is ours, unexpired and for this address; else undefined (an unknown client). */
    deviceOf(token: string | undefined, email: string): string | undefined {
      if (!token) return undefined;
      try {
        const claims = tokens.verify(token);
        return claims.sub === subjectOf(email) && typeof claims.jti === 'string' ? claims.jti : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

export type LoginDevices = ReturnType<typeof createLoginDevices>;
