import type { CookieOptions, Request, Response } from 'express';
import { LOGIN_DEVICE_TTL_SECONDS, MAX_DEVICE_TOKEN_LENGTH } from '../auth/login-devices.js';

/** One cookie's value from the Cookie header (no parser dependency for a few names). */
export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=') || undefined;
  }
  return undefined;
}

/**
 * The web app's cookies. With `secure` (production, or an https PUBLIC_BASE_URL) they
 * are Secure and carry the `__Host-` prefix, which a sibling subdomain cannot set or shadow.
 * Both are HttpOnly and SameSite=Lax: sent on a top-level navigation to us, never on a
 * cross-site form post or fetch.
 */
export function webCookies(secure: boolean) {
  const prefix = secure ? '__Host-' : '';
  const base: CookieOptions = { httpOnly: true, sameSite: 'lax', secure, path: '/' };
  const session = `${prefix}inboxtrail_session`;
  const browser = `${prefix}inboxtrail_browser`;
  const device = `${prefix}inboxtrail_device`;
  return {
    session: {
      read: (req: Request) => readCookie(req, session),
      set: (res: Response, value: string, expiresAt: Date) => res.cookie(session, value, { ...base, expires: expiresAt }),
      clear: (res: Response) => res.clearCookie(session, base),
    },
    /** The device token of the last sign-in here (login-devices.ts): this browser's sign-ins are throttled as a known device's. */
    device: {
      // Anything longer than a token is not ours (nor a reason to refuse the sign-in): no device.
      read: (req: Request) => {
        const value = readCookie(req, device);
        return value && value.length <= MAX_DEVICE_TOKEN_LENGTH ? value : undefined;
      },
      set: (res: Response, value: string) => res.cookie(device, value, { ...base, maxAge: LOGIN_DEVICE_TTL_SECONDS * 1000 }),
    },
    /** A random per-browser value that anonymous forms' CSRF tokens are tied to (sign in, sign up). */
    browser: {
      read: (req: Request) => readCookie(req, browser),
      set: (res: Response, value: string) => res.cookie(browser, value, base),
    },
  };
}

export type WebCookies = ReturnType<typeof webCookies>;
