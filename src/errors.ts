import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { isConcurrencyFailure, sqlStateOf } from './db/pg-errors.js';

/**
 * The one error hierarchy. Services throw these; the single middleware below turns
 * them into `{error:{code,message,details}}` with the right status. Messages are
 * written for the client and must never carry a secret or a mail body.
 */
export class AppError extends Error {
  /** Sent as `Retry-After` when set: when the same request may succeed. */
  readonly retryAfterSeconds?: number;

  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export interface FieldProblem {
  field: string;
  message: string;
}

export class ValidationError extends AppError {
  constructor(problems: FieldProblem[], message = 'The request is not valid') {
    const summary = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
    super('validation_failed', 400, summary ? `${message}: ${summary}` : message, problems);
  }
}

/** A string with U+0000 or an unpaired surrogate: no column can hold it, so it is refused up front. */
export class InvalidTextError extends AppError {
  constructor(readonly field: string) {
    super('invalid_text', 400, `${field} contains a NUL character or invalid Unicode (an unpaired surrogate)`, [
      { field, message: 'contains a NUL character or an unpaired surrogate' },
    ]);
  }
}

export class UnauthorizedError extends AppError {
  constructor(code = 'unauthorized', message = 'Authentication is required') {
    super(code, 401, message);
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'Your role does not allow this') {
    super('forbidden', 403, message);
  }
}

/**
 * A signed-in person re-confirmed an action (closing the account, a new password or login address)
 * with the wrong password. 403, not 401 or 422: the session is fine and the request well formed,
 * only the confirmation is not — and a client must not sign the user out over it.
 */
export class PasswordIncorrectError extends AppError {
  constructor() {
    super('password_incorrect', 403, 'The password does not match this account; nothing was changed');
  }
}

export class NotFoundError extends AppError {
  constructor(what: string, code = 'not_found') {
    super(code, 404, `${what} not found`);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, 409, message, details);
  }
}

/** A conflict with work in progress that will end by itself: the same request passes a little later (Retry-After). */
export class BusyError extends AppError {
  constructor(
    code: string,
    message: string,
    override readonly retryAfterSeconds: number,
  ) {
    super(code, 409, message, { retryAfterSeconds });
  }
}

export class UnprocessableError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, 422, message, details);
  }
}

export class TooManyRequestsError extends AppError {
  constructor(
    message: string,
    override readonly retryAfterSeconds?: number,
    more?: Record<string, unknown>,
  ) {
    const details = { ...(retryAfterSeconds ? { retryAfterSeconds } : {}), ...more };
    super('too_many_requests', 429, message, Object.keys(details).length > 0 ? details : undefined);
  }
}

/**
 * The database gave up on this request's transaction because another one held what it needed
 * the other way round (a deadlock, 40P01) or changed it under a stricter isolation (40001). The
 * transaction was rolled back, and the same request will most likely pass on its own a moment
 * later: a conflict of timing between two requests, not a fault of ours to page anyone about.
 * Only a step in its own transaction is undone; the message does not promise that nothing
 * before it was kept.
 */
export class ConcurrentChangeError extends AppError {
  override readonly retryAfterSeconds = 1;
  constructor(readonly sqlState: string) {
    super('concurrent_change', 409, 'Another request was changing the same records at the same moment; try again');
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(expected: string) {
    super('unsupported_media_type', 415, `Content-Type must be ${expected}`);
  }
}

/** Errors raised by body parsers (http-errors) carry a `type` we translate into stable codes. */
const BODY_PARSER_CODES: Record<string, { code: string; message: string }> = {
  'entity.parse.failed': { code: 'invalid_json', message: 'The request body is not valid JSON' },
  'entity.too.large': { code: 'payload_too_large', message: 'The request body is too large' },
  'encoding.unsupported': { code: 'unsupported_encoding', message: 'The request body encoding is not supported' },
  'charset.unsupported': { code: 'unsupported_charset', message: 'The request body charset is not supported' },
  'request.aborted': { code: 'request_aborted', message: 'The request was aborted' },
};

interface HttpErrorLike {
  status?: number;
  statusCode?: number;
  type?: string;
  /** zlib's code (`Z_DATA_ERROR`, `Z_BUF_ERROR`) when a compressed body does not inflate. */
  code?: string;
  expose?: boolean;
}

const BODY_NOT_INFLATED = { code: 'invalid_body_encoding', message: 'The request body is not valid for its Content-Encoding' };

export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (isConcurrencyFailure(error)) return new ConcurrentChangeError(sqlStateOf(error)!);
  const httpError = error as HttpErrorLike | null;
  const status = httpError?.status ?? httpError?.statusCode;
  if (status && status >= 400 && status < 500) {
    const known = httpError?.type ? BODY_PARSER_CODES[httpError.type] : httpError?.code?.startsWith('Z_') ? BODY_NOT_INFLATED : undefined;
    return new AppError(known?.code ?? 'bad_request', status, known?.message ?? 'The request could not be processed');
  }
  return new AppError('internal_error', 500, 'Something went wrong on our side');
}

export function errorMiddleware(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const appError = toAppError(error);
    if (appError.status >= 500) {
      // The original error goes to the log (redacted by the logger), never to the client.
      (req.log ?? logger).error({ err: error }, 'request failed');
    }
    if (res.headersSent) {
      // The answer had begun (a streamed export): the client got a cut-off body, which is ours to look into.
      if (appError.status < 500) (req.log ?? logger).error({ err: error }, 'request failed after its answer began');
      return;
    }
    prepareErrorAnswer(appError, res, req.log ?? logger);
    // Answered before the body was read to its end (a refused upload): this connection
    // carries unread bytes, so it must not be reused for the client's next request.
    if (!req.complete) res.setHeader('Connection', 'close');
    res.status(appError.status).json({
      error: {
        code: appError.code,
        message: appError.message,
        ...(appError.details === undefined ? {} : { details: appError.details }),
      },
    });
  };
}

/**
 * What every error answer (JSON, web page, opt-out page) does before its body: `Retry-After`
 * when the error names one, and a lost lock race counted in the log by its SQLSTATE alone (the
 * driver's message may quote the rows' values): frequent ones point at a lock order to fix.
 */
export function prepareErrorAnswer(appError: AppError, res: Pick<Response, 'setHeader'>, logger: Pick<Logger, 'warn'> | undefined): void {
  if (appError.retryAfterSeconds) res.setHeader('Retry-After', String(appError.retryAfterSeconds));
  if (appError instanceof ConcurrentChangeError) logger?.warn({ sqlState: appError.sqlState }, 'request lost a lock race; answered 409 concurrent_change');
}
