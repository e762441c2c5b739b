/**
 * Google's two error dialects, so the real client turns them into the same GaxiosError
 * it would get from Google: REST APIs answer `{error:{code,message,status,errors:[…]}}`,
 * the OAuth endpoints answer `{error:'invalid_grant', error_description:'…'}`.
 */

export interface GoogleErrorItem {
  domain: string;
  reason: string;
  message: string;
  location?: string;
  locationType?: string;
}

export interface GoogleErrorBody {
  error: { code: number; message: string; status: string; errors: GoogleErrorItem[] };
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  412: 'FAILED_PRECONDITION',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  501: 'UNIMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/** A Gmail API failure; the HTTP layer renders it in Google's JSON shape. */
export class GoogleApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly options: {
      domain?: string;
      retryAfterSeconds?: number;
      itemMessage?: string;
      location?: string;
      locationType?: string;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.name = 'GoogleApiError';
  }

  toBody(): GoogleErrorBody {
    const item: GoogleErrorItem = {
      message: this.options.itemMessage ?? this.message,
      domain: this.options.domain ?? 'global',
      reason: this.reason,
      ...(this.options.location ? { location: this.options.location, locationType: this.options.locationType ?? 'parameter' } : {}),
    };
    return {
      error: { code: this.status, message: this.message, errors: [item], status: STATUS_NAMES[this.status] ?? 'UNKNOWN' },
    };
  }

  headers(): Record<string, string> {
    return {
      ...(this.options.retryAfterSeconds !== undefined ? { 'Retry-After': String(this.options.retryAfterSeconds) } : {}),
      ...this.options.headers,
    };
  }
}

export const gmailErrors = {
  unauthenticated: () =>
    new GoogleApiError(
      401,
      'authError',
      'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
      {
        itemMessage: 'Invalid Credentials',
        location: 'Authorization',
        locationType: 'header',
        headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
      },
    ),
  insufficientScopes: () =>
    new GoogleApiError(403, 'insufficientPermissions', 'Request had insufficient authentication scopes.', {
      itemMessage: 'Insufficient Permission',
      headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="insufficient_scope"' },
    }),
  delegationDenied: (userId: string) => new GoogleApiError(403, 'forbidden', `Delegation denied for ${userId}`),
  notFound: () => new GoogleApiError(404, 'notFound', 'Requested entity was not found.'),
  invalidArgument: (message: string) => new GoogleApiError(400, 'invalidArgument', message),
  failedPrecondition: (message: string) => new GoogleApiError(400, 'failedPrecondition', message),
  rateLimit: (retryAfterSeconds: number, now: Date) =>
    new GoogleApiError(
      429,
      'rateLimitExceeded',
      `User-rate limit exceeded.  Retry after ${new Date(now.getTime() + retryAfterSeconds * 1000).toISOString()}`,
      { domain: 'usageLimits', retryAfterSeconds },
    ),
  userRateLimit: (retryAfterSeconds?: number) =>
    new GoogleApiError(403, 'userRateLimitExceeded', 'User Rate Limit Exceeded', { domain: 'usageLimits', retryAfterSeconds }),
  backendError: (status: 500 | 503) =>
    status === 503
      ? new GoogleApiError(503, 'backendError', 'The service is currently unavailable.')
      : new GoogleApiError(500, 'backendError', 'Backend Error'),
};

/** An OAuth endpoint failure: `{error, error_description}` like oauth2.googleapis.com. */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(`${error}: ${description}`);
    this.name = 'OAuthError';
  }

  toBody(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}
