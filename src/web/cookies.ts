import type { CookieOptions, Request, Response } from 'express';

/** One cookie's value from the Cookie header (no parser dependency for a few names). */
export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=') || undefined;
  }
  return undefined;
}

/**
 * The web app's two cookies. With `secure` (production, or an https PUBLIC_BASE_URL) they
 * are Secure and carry the `__Host-` prefix, which a sibling subdomain cannot set or shadow.
 * Both are HttpOnly and SameSite=Lax: sent on a top-level navigation to us, never on a
 * cross-site form post or fetch.
 */
export function webCookies(secure: boolean) {
  const prefix = secure ? '__Host-' : '';
  const base: CookieOptions = { httpOnly: true, sameSite: 'lax', secure, path: '/' };
  const session = `${prefix}inboxtrail_session`;
  const browser = `${prefix}inboxtrail_browser`;
  return {
    session: {
      read: (req: Request) => readCookie(req, session),
      set: (res: Response, value: string, expiresAt: Date) => res.cookie(session, value, { ...base, expires: expiresAt }),
      clear: (res: Response) => res.clearCookie(session, base),
    },
    /** A random per-browser value that anonymous forms' CSRF tokens are tied to (sign in, sign up). */
    browser: {
      read: (req: Request) => readCookie(req, browser),
      set: (res: Response, value: string) => res.cookie(browser, value, base),
    },
  };
}

export type WebCookies = ReturnType<typeof webCookies>;
