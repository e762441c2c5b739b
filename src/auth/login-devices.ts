import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { createSignedTokens } from './signed-tokens.js';

/** No token of ours is longer: a longer value is refused by the API (400) and ignored in a cookie. */
export const MAX_DEVICE_TOKEN_LENGTH = 2048;

/** How long a device stays known after its last successful sign-in (each sign-in renews it). */
export const LOGIN_DEVICE_TTL_SECONDS = 180 * 24 * 3600;

/*
 * Known devices (OWASP's "device cookies"): a successful login hands the client a signed token
 * naming the account (its user id) and its session version, and a random device id. A later
 * login to that account that presents it is throttled per device instead of per account
 * (throttle.ts): a stranger's wrong passwords can lock the account against unknown clients,
 * never against the person's own browser or CRM integration. Only someone who signed in with the
 * password holds one; a password change (a new session version) ends every token of the account,
 * and an address that passes to another account (a change, a closure) does not take them along.
 * A device's own wrong passwords are counted and limited per device like an account's.
 */
export function createLoginDevices(jwt: Config['jwt']) {
  const tokens = createSignedTokens(jwt, { audience: 'inboxtrail-login-device', ttlSeconds: LOGIN_DEVICE_TTL_SECONDS });
  return {
    /** A new device token for this account, valid until its password changes. */
    issue(user: { id: string; sessionVersion: number }): string {
      return tokens.sign({ sv: user.sessionVersion }, user.id, randomUUID());
    },
    /** The device id the token names, when it is ours, unexpired and for this account as it is now; else undefined (an unknown client). */
    deviceOf(token: string | undefined, user: { id: string; sessionVersion: number } | undefined): string | undefined {
      if (!token || !user) return undefined;
      try {
        const claims = tokens.verify(token);
        return claims.sub === user.id && claims.sv === user.sessionVersion && typeof claims.jti === 'string' ? claims.jti : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

export type LoginDevices = ReturnType<typeof createLoginDevices>;
