import { GoogleApiError, OAuthError, gmailErrors } from './google-errors.js';

/** Every endpoint the sandbox counts calls for and can fault. */
export const SANDBOX_ENDPOINTS = [
  'authorize',
  'token',
  'revoke',
  'tokeninfo',
  'userinfo',
  'profile',
  'send',
  'list',
  'get',
  'attachment',
  'modify',
  'thread',
  'history',
  'watch',
  'stop',
  'labels',
] as const;
export type SandboxEndpoint = (typeof SANDBOX_ENDPOINTS)[number];

export type FaultEffect =
  /** 429 `rateLimitExceeded` with `Retry-After` (default 1 s). */
  | { kind: 'rateLimit'; retryAfterSeconds?: number }
  /** 403 `userRateLimitExceeded` (Retry-After only when given). */
  | { kind: 'userRateLimit'; retryAfterSeconds?: number }
  /** 500 or 503 `backendError` (default 500). */
  | { kind: 'backendError'; status?: 500 | 503 }
  /** Any Google-shaped error, for cases the shortcuts above do not cover. */
  | { kind: 'googleError'; status: number; reason: string; message?: string; domain?: string; retryAfterSeconds?: number }
  /** Delays the response by `ms`, then the request proceeds (or meets the next matching fault). */
  | { kind: 'latency'; ms: number }
  /** Token endpoint answers `invalid_grant` and the mailbox's grant is revoked, as when a user removes access. */
  | { kind: 'invalidGrant' };

export type FaultRule = FaultEffect & {
  /** Which endpoint; `*` (default) is every endpoint. `invalidGrant` always means `token`. */
  endpoint?: SandboxEndpoint | '*';
  /** Only requests acting for this mailbox (case-insensitive); every mailbox when absent. */
  mailbox?: string;
  /** How many matching requests it hits; default 1; `'always'` until cleared. */
  times?: number | 'always';
};

export interface ActiveFault {
  id: string;
  rule: FaultRule;
  remaining: number | 'always';
  hits: number;
}

export interface CallRecord {
  endpoint: SandboxEndpoint;
  mailbox?: string;
  status: number;
  faulted: boolean;
  /** When the response finished. */
  at: string;
  /** When the request arrived (before any injected latency): "was this send started after X?". */
  receivedAt: string;
  /** messages.send that stored a message, or messages.get: the message's id, to tie the call to the message. */
  messageId?: string;
}

export interface CallFilter {
  mailbox?: string;
  endpoint?: SandboxEndpoint;
  /** Only calls answered 2xx/3xx (e.g. "sent exactly once" counts only sends that succeeded). */
  successfulOnly?: boolean;
}

/** What a matched fault asks the HTTP layer to do. */
export interface FaultDecision {
  latencyMs: number;
  error?: GoogleApiError | OAuthError;
  /** invalidGrant: revoke this mailbox's grant before answering. */
  revokeGrant: boolean;
}

function validateRule(rule: FaultRule): FaultRule {
  const kinds = ['rateLimit', 'userRateLimit', 'backendError', 'googleError', 'latency', 'invalidGrant'];
  if (!kinds.includes(rule.kind)) throw new TypeError(`unknown fault kind: ${String(rule.kind)}`);
  if (rule.endpoint !== undefined && rule.endpoint !== '*' && !SANDBOX_ENDPOINTS.includes(rule.endpoint)) {
    throw new TypeError(`unknown endpoint: ${String(rule.endpoint)} (one of *, ${SANDBOX_ENDPOINTS.join(', ')})`);
  }
  if (rule.times !== undefined && rule.times !== 'always' && (!Number.isInteger(rule.times) || rule.times < 1)) {
    throw new TypeError('times must be a positive integer or "always"');
  }
  if (rule.kind === 'latency' && !(Number.isFinite(rule.ms) && rule.ms >= 0)) throw new TypeError('latency needs ms >= 0');
  if (rule.kind === 'googleError' && !(Number.isInteger(rule.status) && rule.status >= 400 && rule.status <= 599 && rule.reason)) {
    throw new TypeError('googleError needs a 4xx/5xx status and a reason');
  }
  if (rule.kind === 'backendError' && rule.status !== undefined && rule.status !== 500 && rule.status !== 503) {
    throw new TypeError('backendError status must be 500 or 503');
  }
  return rule.kind === 'invalidGrant' ? { ...rule, endpoint: 'token' } : rule;
}

/** Token-endpoint faults speak OAuth's dialect; the client would never see a Gmail-shaped body there. */
function asOAuthError(error: GoogleApiError): OAuthError {
  const code = error.status === 429 ? 'rate_limit_exceeded' : error.status >= 500 ? (error.status === 503 ? 'temporarily_unavailable' : 'server_error') : error.reason;
  return new OAuthError(error.status, code, error.message, error.headers());
}

export class FaultBook {
  private faults: ActiveFault[] = [];
  private callLog: CallRecord[] = [];
  private nextId = 1;

  add(input: FaultRule): ActiveFault {
    const rule = validateRule(input);
    const fault: ActiveFault = { id: `fault-${this.nextId++}`, rule, remaining: rule.times ?? 1, hits: 0 };
    this.faults.push(fault);
    return fault;
  }

  list(): ActiveFault[] {
    return this.faults.map((f) => ({ ...f, rule: { ...f.rule } }));
  }

  remove(id: string): boolean {
    const before = this.faults.length;
    this.faults = this.faults.filter((f) => f.id !== id);
    return this.faults.length !== before;
  }

  clear(): void {
    this.faults = [];
  }

  private matches(fault: ActiveFault, endpoint: SandboxEndpoint, mailbox: string | undefined): boolean {
    const { rule } = fault;
    if (rule.endpoint && rule.endpoint !== '*' && rule.endpoint !== endpoint) return false;
    if (rule.mailbox && rule.mailbox.toLowerCase() !== mailbox?.toLowerCase()) return false;
    return true;
  }

  private consume(fault: ActiveFault): void {
    fault.hits++;
    if (fault.remaining !== 'always') {
      fault.remaining--;
      if (fault.remaining <= 0) this.faults = this.faults.filter((f) => f !== fault);
    }
  }

  /**
   * Consumes the faults that apply to one request, oldest first: every matching latency
   * adds up, then the first matching error (if any) answers the request.
   */
  decide(endpoint: SandboxEndpoint, mailbox: string | undefined, now: Date): FaultDecision {
    const decision: FaultDecision = { latencyMs: 0, revokeGrant: false };
    for (const fault of [...this.faults]) {
      if (!this.matches(fault, endpoint, mailbox)) continue;
      const { rule } = fault;
      if (rule.kind === 'latency') {
        decision.latencyMs += rule.ms;
        this.consume(fault);
        continue;
      }
      if (decision.error) continue;
      this.consume(fault);
      let error: GoogleApiError | OAuthError;
      switch (rule.kind) {
        case 'rateLimit':
          error = gmailErrors.rateLimit(rule.retryAfterSeconds ?? 1, now);
          break;
        case 'userRateLimit':
          error = gmailErrors.userRateLimit(rule.retryAfterSeconds);
          break;
        case 'backendError':
          error = gmailErrors.backendError(rule.status ?? 500);
          break;
        case 'googleError':
          error = new GoogleApiError(rule.status, rule.reason, rule.message ?? rule.reason, {
            domain: rule.domain,
            retryAfterSeconds: rule.retryAfterSeconds,
          });
          break;
        case 'invalidGrant':
          error = new OAuthError(400, 'invalid_grant', 'Token has been expired or revoked.');
          decision.revokeGrant = true;
          break;
      }
      decision.error = endpoint === 'token' && error instanceof GoogleApiError ? asOAuthError(error) : error;
    }
    return decision;
  }

  record(call: CallRecord): void {
    this.callLog.push(call);
  }

  calls(filter: CallFilter = {}): CallRecord[] {
    return this.callLog.filter(
      (c) =>
        (!filter.endpoint || c.endpoint === filter.endpoint) &&
        (!filter.mailbox || c.mailbox?.toLowerCase() === filter.mailbox.toLowerCase()) &&
        (!filter.successfulOnly || c.status < 400),
    );
  }

  counts(filter: Omit<CallFilter, 'endpoint'> = {}): Record<SandboxEndpoint, number> {
    const counts = Object.fromEntries(SANDBOX_ENDPOINTS.map((e) => [e, 0])) as Record<SandboxEndpoint, number>;
    for (const call of this.calls(filter)) counts[call.endpoint]++;
    return counts;
  }

  reset(): void {
    this.faults = [];
    this.callLog = [];
  }
}
