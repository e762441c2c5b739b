import { errorNameOf } from '../logger.js';

/**
 * Every way a Gmail or Google OAuth call can fail, reduced to the one thing callers need:
 * what to do next. `rate_limited` and `temporary` are retried (the pacer does that),
 * `auth_revoked` pauses the mailbox until its owner reconnects, `not_found` lets sync fall
 * back to a full resync, and `permanent` fails the one operation.
 *
 * A GmailError is logged and may be shown to users, so it is built from status codes and
 * Google's short reason strings only: never from the request (its URL carries ids and
 * sometimes tokens, its headers carry the bearer token, its body carries the mail).
 */

export type GmailErrorKind = 'rate_limited' | 'temporary' | 'auth_revoked' | 'not_found' | 'permanent';

export class GmailError extends Error {
  readonly kind: GmailErrorKind;
  // `declare`d so an absent detail is absent, not an own property holding undefined.
  declare readonly status?: number;
  declare readonly reason?: string;
  declare readonly retryAfterSeconds?: number;

  constructor(
    kind: GmailErrorKind,
    message: string,
    details: { status?: number; reason?: string; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'GmailError';
    this.kind = kind;
    if (details.status !== undefined) this.status = details.status;
    if (details.reason !== undefined) this.reason = details.reason;
    if (details.retryAfterSeconds !== undefined) this.retryAfterSeconds = details.retryAfterSeconds;
  }

  /** Whether trying the same call again later can succeed. */
  get retryable(): boolean {
    return this.kind === 'rate_limited' || this.kind === 'temporary';
  }

  /** Error's own `message` is not enumerable; logs and API replies should still get it. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      kind: this.kind,
      message: this.message,
      ...(this.status === undefined ? {} : { status: this.status }),
      ...(this.reason === undefined ? {} : { reason: this.reason }),
      ...(this.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: this.retryAfterSeconds }),
    };
  }
}

/** Google never asks for more than a day; a bigger or broken value must not park a mailbox for weeks. */
export const MAX_RETRY_AFTER_SECONDS = 86_400;

/** Google's daily quota resets at midnight Pacific; an hour is a polite first guess when it does not say. */
const DAILY_LIMIT_DEFAULT_RETRY_SECONDS = 3600;

const RATE_LIMIT_REASONS = new Set([
  'rateLimitExceeded',
  'userRateLimitExceeded',
  'quotaExceeded',
  'dailyLimitExceeded',
  'concurrentLimitExceeded',
  'RESOURCE_EXHAUSTED',
]);

/** The token works but lacks a scope we need: only the user consenting again fixes it. */
const MISSING_SCOPE_REASONS = new Set(['insufficientPermissions', 'ACCESS_TOKEN_SCOPE_INSUFFICIENT']);

/**
 * OAuth answers that mean this grant is gone or unusable. `unauthorized_client` is really
 * our configuration, but every call for the mailbox fails the same way, so pausing it
 * (instead of failing each send on its own) is the right reaction.
 */
const REVOKED_OAUTH_ERRORS = new Set(['invalid_grant', 'admin_policy_enforced', 'unauthorized_client', 'invalid_token']);

/**
 * `invalid_client`: Google does not know our client id/secret; `invalid_request` to a token
 * refresh: our request was malformed (a parameter missing or unsupported — the grant itself
 * would be `invalid_grant`). No user's grant is at fault and no reconnect would help, so no
 * mailbox is flipped to needs_reconnect and nothing is failed for good (a 1:1 send was a 422
 * `gmail_rejected`, "Gmail refused the message"): the work is retried later like any outage,
 * and an alert is logged (mailboxes.service.ts). A code exchange's `invalid_request` can come
 * from the browser's own request, so connecting still answers it as a refused code.
 */
const OUR_CONFIGURATION_OAUTH_ERRORS = new Set(['invalid_client', 'invalid_request']);

/** Whether Google's OAuth answer blames our configuration or our request, not the user's grant (above). */
export const isOurOAuthConfigurationError = (reason: string | undefined) => reason !== undefined && OUR_CONFIGURATION_OAUTH_ERRORS.has(reason);

const TEMPORARY_OAUTH_ERRORS = new Set(['temporarily_unavailable', 'server_error']);

const TEMPORARY_STATUSES = new Set([408, 500, 502, 503, 504]);

/** Node, undici and node-fetch codes for a connection that failed or broke; the next try may work. */
const TEMPORARY_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  // gaxios reports its own `timeout` option as the DOMException name: TimeoutError in some
  // versions, AbortError in the one we run (its timeout aborts the fetch). Either way the
  // request may have reached Google, so the call is temporary, and a send is ambiguous.
  'TimeoutError',
  'AbortError',
  'ABORT_ERR',
]);

const TEMPORARY_NETWORK_MESSAGES = ['socket hang up', 'other side closed', 'fetch failed', 'premature close'];

export function isTemporaryNetworkFailure(codeOrMessage: string | undefined): boolean {
  if (!codeOrMessage) return false;
  if (TEMPORARY_NETWORK_CODES.has(codeOrMessage)) return true;
  const lower = codeOrMessage.toLowerCase();
  return TEMPORARY_NETWORK_MESSAGES.some((m) => lower.includes(m));
}

/**
 * `Retry-After` as Google sends it: delay-seconds or an HTTP date (an ISO date is accepted
 * too, because Gmail also writes "Retry after <ISO date>" into its messages). Whole seconds,
 * rounded up so that a retry is never early, clamped to [0, 86400]; undefined when unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  let seconds: number;
  // Anything number-shaped is seconds, so "-5" is clamped rather than read as the year -5.
  if (/^[+-]?\d+(\.\d+)?$/.test(text)) {
    seconds = Number(text);
  } else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    seconds = (at - now) / 1000;
  }
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(0, Math.ceil(seconds)));
}

/**
 * Pure decision table: HTTP status + Google's `reason` (Gmail JSON errors: error.errors[0].reason
 * or error.status) or OAuth `error` string. `now` only matters for an HTTP-date Retry-After.
 */
export function classifyGoogleFailure(input: {
  status?: number;
  reason?: string;
  oauthError?: string;
  retryAfter?: string | null;
  networkCode?: string;
  now?: number;
}): { kind: GmailErrorKind; retryAfterSeconds?: number } {
  const { status, reason, oauthError } = input;
  const retryAfterSeconds = parseRetryAfter(input.retryAfter, input.now);
  const withRetryAfter = (kind: GmailErrorKind, fallbackSeconds?: number) => {
    const seconds = retryAfterSeconds ?? fallbackSeconds;
    return seconds === undefined ? { kind } : { kind, retryAfterSeconds: seconds };
  };
  // A status-less answer is judged by its reason alone; a 403 is the only status Google
  // reuses for quota and scope problems, everything else is decided by the status.
  const reasonDecides = status === undefined || status === 403;

  if (oauthError && OUR_CONFIGURATION_OAUTH_ERRORS.has(oauthError)) return withRetryAfter('temporary', 300);
  if (oauthError && REVOKED_OAUTH_ERRORS.has(oauthError)) return { kind: 'auth_revoked' };
  if (status === 429 || oauthError === 'rate_limit_exceeded') return withRetryAfter('rate_limited');
  if (reasonDecides && reason && RATE_LIMIT_REASONS.has(reason)) {
    return withRetryAfter('rate_limited', reason === 'dailyLimitExceeded' ? DAILY_LIMIT_DEFAULT_RETRY_SECONDS : undefined);
  }
  if (reasonDecides && reason && MISSING_SCOPE_REASONS.has(reason)) return { kind: 'auth_revoked' };
  if (status === 401) return { kind: 'auth_revoked' };
  if (status === 404) return { kind: 'not_found' };
  if (status !== undefined) {
    if (TEMPORARY_STATUSES.has(status)) return withRetryAfter('temporary');
    // 501 and 505 say the server will never do this; other 5xx (proxies, 507, 520…) pass.
    if (status >= 500 && status <= 599 && status !== 501 && status !== 505) return withRetryAfter('temporary');
    return { kind: 'permanent' };
  }
  if (oauthError && TEMPORARY_OAUTH_ERRORS.has(oauthError)) return withRetryAfter('temporary');
  if (isTemporaryNetworkFailure(input.networkCode)) return { kind: 'temporary' };
  return { kind: 'permanent' };
}

// ---------------------------------------------------------------------------
// Reading what the Google client threw. GaxiosError comes from two gaxios copies
// (google-auth-library's and @googleapis/gmail's), and `instanceof` only holds within one
// version, so the shape is read structurally.

type HeadersLike = { get(name: string): string | null } | Record<string, unknown>;

interface GaxiosErrorLike {
  message?: unknown;
  code?: unknown;
  status?: unknown;
  cause?: unknown;
  error?: unknown;
  response?: { status?: unknown; headers?: HeadersLike; data?: unknown };
}

/** google-auth-library throws these plain Errors when a mailbox has no usable credentials at all. */
const MISSING_CREDENTIAL_MESSAGES = ['No refresh token is set.', 'No access, refresh token, API key or refresh handler callback is set.'];

const OAUTH_ERROR_SHAPE = /^[a-z][a-z_]{2,63}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function readStatus(error: GaxiosErrorLike): number | undefined {
  for (const candidate of [error.status, error.response?.status, error.code]) {
    if (typeof candidate === 'number' && Number.isInteger(candidate) && candidate >= 100 && candidate <= 599) return candidate;
    // Older gaxios wrote the HTTP status into `code` as a string.
    if (typeof candidate === 'string' && /^[1-5]\d\d$/.test(candidate)) return Number(candidate);
  }
  return undefined;
}

function readHeader(headers: HeadersLike | undefined, name: string): string | undefined {
  if (!isObject(headers)) return undefined;
  if (typeof headers.get === 'function') {
    const value = (headers as { get(name: string): string | null }).get(name);
    return typeof value === 'string' ? value : undefined;
  }
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== lower) continue;
    if (typeof value === 'string') return value;
    if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
    if (typeof value === 'number') return String(value);
  }
  return undefined;
}

/** Response data is usually parsed JSON, but arrives as text for stream/text response types. */
function readBody(data: unknown): Record<string, unknown> | undefined {
  if (isObject(data)) return data;
  if (typeof data === 'string' && data.length <= 64_000 && data.trimStart().startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(data);
      return isObject(parsed) ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

interface GoogleAnswer {
  reason?: string;
  oauthError?: string;
  /** Gmail writes "Retry after <ISO date>" into some 429 messages instead of a header. */
  retryAfterInMessage?: string;
}

function readGoogleAnswer(data: unknown): GoogleAnswer {
  const body = readBody(data);
  const error = body?.error;
  if (typeof error === 'string') return OAUTH_ERROR_SHAPE.test(error) ? { oauthError: error } : {};
  if (!isObject(error)) return {};
  const answer: GoogleAnswer = {};
  const firstItem = Array.isArray(error.errors) ? (error.errors[0] as unknown) : undefined;
  const errorInfo = Array.isArray(error.details)
    ? (error.details as unknown[]).find((d) => isObject(d) && typeof d.reason === 'string')
    : undefined;
  // Most specific first: the Gmail item reason, then the AIP-193 ErrorInfo, then the canonical status.
  const reason =
    (isObject(firstItem) && typeof firstItem.reason === 'string' ? firstItem.reason : undefined) ??
    (isObject(errorInfo) && typeof errorInfo.reason === 'string' ? errorInfo.reason : undefined) ??
    (typeof error.status === 'string' ? error.status : undefined);
  if (reason && /^[A-Za-z0-9_.-]{1,100}$/.test(reason)) answer.reason = reason;
  if (typeof error.message === 'string') {
    const retryAt = /retry after (\d{4}-\d\d-\d\dT[\d:.]+Z)/i.exec(error.message);
    if (retryAt) answer.retryAfterInMessage = retryAt[1];
  }
  return answer;
}

/** The first system/undici code along the cause chain: fetch wraps the socket error one or two levels deep. */
function findNetworkCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0 && seen.size < 10) {
    const current = queue.shift();
    if (!isObject(current) || seen.has(current)) continue;
    seen.add(current);
    if (typeof current.code === 'string' && !/^\d+$/.test(current.code)) return current.code;
    if (current instanceof DOMException && current.name !== 'Error') return current.name;
    // gaxios's timeout surfaces as a plain "The operation was aborted." whose cause is an AbortError (not a DOMException).
    if (current instanceof Error && (current.name === 'AbortError' || current.name === 'TimeoutError')) return current.name;
    queue.push(current.cause, current.error);
    if (Array.isArray(current.errors)) queue.push(...(current.errors as unknown[]));
  }
  return undefined;
}

function findNetworkMessage(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && isObject(current); depth++) {
    const message = typeof current.message === 'string' ? current.message : undefined;
    if (isTemporaryNetworkFailure(message)) {
      return TEMPORARY_NETWORK_MESSAGES.find((m) => message!.toLowerCase().includes(m));
    }
    current = current.cause;
  }
  return undefined;
}

/** For errors we know nothing about: keep the words, drop anything that can carry a credential. */
function sanitizeFreeText(text: string): string {
  return text
    .replace(/(https?:\/\/[^\s?#'"]*)[?#][^\s'"]*/gi, '$1')
    .replace(/\bBearer\s+\S+/gi, '[redacted]')
    .replace(/\bya29\.[\w.-]+/g, '[redacted]')
    .replace(/\b1\/\/[\w.-]{20,}/g, '[redacted]')
    .slice(0, 200);
}

function looksLikeGaxiosError(error: unknown): error is GaxiosErrorLike {
  return isObject(error) && ('config' in error || 'response' in error);
}

/**
 * Turns anything thrown by @googleapis/gmail / google-auth-library (GaxiosError) or the network
 * into a GmailError. Never copies tokens, request bodies or headers into the message, and does not
 * keep the original as `cause`: a GaxiosError holds the whole request (headers, body), and log
 * serializers walk causes.
 */
export function toGmailError(error: unknown): GmailError {
  if (error instanceof GmailError) return error;

  if (looksLikeGaxiosError(error)) {
    const status = readStatus(error);
    const answer = readGoogleAnswer(error.response?.data);
    const message = typeof error.message === 'string' ? error.message : '';
    // The refresh path rethrows with `message` set to the OAuth error even when data is gone.
    const oauthError =
      answer.oauthError ?? ([REVOKED_OAUTH_ERRORS, TEMPORARY_OAUTH_ERRORS, OUR_CONFIGURATION_OAUTH_ERRORS].some((set) => set.has(message)) ? message : undefined);
    const networkCode = status === undefined ? (findNetworkCode(error) ?? findNetworkMessage(error)) : undefined;
    const retryAfter = readHeader(error.response?.headers, 'retry-after') ?? answer.retryAfterInMessage;
    const { kind, retryAfterSeconds } = classifyGoogleFailure({
      status,
      reason: answer.reason,
      oauthError,
      retryAfter,
      networkCode,
    });
    const reason = oauthError ?? answer.reason ?? networkCode;
    const text =
      status !== undefined
        ? `${oauthError ? 'Google OAuth' : 'Gmail'} ${status}${reason ? ` ${reason}` : ''}`
        : oauthError
          ? `Google OAuth ${oauthError}`
          : `Gmail request failed${networkCode ? `: ${networkCode}` : ''}`;
    return new GmailError(kind, text, { status, reason, retryAfterSeconds });
  }

  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  if (MISSING_CREDENTIAL_MESSAGES.includes(message)) {
    return new GmailError('auth_revoked', `Gmail credentials missing: ${message}`, { reason: 'missing_credentials' });
  }
  const networkCode = findNetworkCode(error) ?? findNetworkMessage(error);
  if (isTemporaryNetworkFailure(networkCode)) {
    return new GmailError('temporary', `Gmail request failed: ${networkCode}`, { reason: networkCode });
  }
  const name = errorNameOf(error);
  const detail = message ? `: ${sanitizeFreeText(message)}` : '';
  return new GmailError('permanent', `Gmail call failed (${name})${detail}`, networkCode ? { reason: networkCode } : {});
}
