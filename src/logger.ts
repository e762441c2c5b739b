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
