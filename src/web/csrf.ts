import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * CSRF: a synchronizer token derived from the secret the browser already holds in an
 * HttpOnly cookie — the session cookie when signed in, else the per-browser cookie. Another
 * site can make the browser send that cookie but can neither read it nor the pages that
 * carry the token, so it cannot fill in the form field. The derivation is one-way: a token
 * seen in a page never reveals the cookie. Signing out or in changes the basis, so a form
 * rendered in the previous state is refused.
 */
export const CSRF_FIELD = '_csrf';

export function csrfTokenFor(cookieSecret: string): string {
  return createHash('sha256').update('inboxtrail web csrf\0').update(cookieSecret).digest('base64url');
}

export function csrfTokenMatches(cookieSecret: string | undefined, submitted: unknown): boolean {
  if (!cookieSecret || typeof submitted !== 'string') return false;
  const expected = Buffer.from(csrfTokenFor(cookieSecret));
  const given = Buffer.from(submitted);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export const newBrowserSecret = () => randomBytes(32).toString('base64url');
