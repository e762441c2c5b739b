import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * Paths whose values never reach a log line (invariant 6): credentials in headers,
 * anything that looks like a token, password or mail body wherever it is nested.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-goog-iap-jwt-assertion"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.secret',
  '*.clientSecret',
  '*.raw',
  '*.html',
  '*.text',
  '*.body',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { service: 'inboxtrail' },
    },
    destination,
  );
}

export type { Logger };

/** Path prefixes whose next segment is a credential (recipient tokens). */
const TOKEN_PATH = /^(\/(?:u|p|t\/o|t\/c)\/)[^/?#]+/;
/** Query parameters that carry credentials (OAuth codes and state, invitation tokens). */
const SECRET_QUERY = /([?&](?:code|state|token|access_token|id_token)=)[^&#]*/gi;

/**
 * A request URL fit for a log line: the token of an unsubscribe or tracking link is a
 * credential (whoever holds it can opt that person out), and so is an OAuth code.
 */
export function redactUrl(url: string): string {
  return url.replace(TOKEN_PATH, '$1[token]').replace(SECRET_QUERY, '$1[redacted]');
}
