import type { Logger } from '../logger.js';

/** A database error without its parameters (they hold addresses and user agents). */
export function describeDatabaseError(error: unknown): { code?: string; message: string } {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.message) return { code: cause.code, message: cause.message };
  const message = error instanceof Error ? error.message.split('\n')[0]! : 'unknown error';
  return { code: (error as { code?: string })?.code, message: message.slice(0, 200) };
}

/**
 * The retry rhythm of a background database writer during an outage (the event writer, the
 * rollup runner): a delay from `initialMs` doubling to `maxMs`, reset by a success; the first
 * failure of an outage logged at once and then at most every 30 s, by its database error only;
 * the recovery logged with the count of failures it ended.
 */
export function createWriteBackoff(options: { logger: Logger; now: () => number; initialMs: number; maxMs: number; failingMessage: string; recoveredMessage: string }) {
  const { logger, now, initialMs, maxMs } = options;
  let delayMs = 0;
  let retryAt = 0;
  let failures = 0;
  let lastLog = 0;
  return {
    /** When the next attempt is due (0: now). */
    get retryAt(): number {
      return retryAt;
    },
    get delayMs(): number {
      return delayMs;
    },
    /** Failures since the last success. */
    get failures(): number {
      return failures;
    },
    succeeded(): void {
      if (failures > 0) logger.info({ failures }, options.recoveredMessage);
      failures = 0;
      delayMs = 0;
      retryAt = 0;
    },
    /** Counts the failure, sets the next attempt's time, logs (throttled) with `context`. */
    failed(error: unknown, context: Record<string, unknown> = {}): void {
      failures += 1;
      delayMs = delayMs === 0 ? initialMs : Math.min(delayMs * 2, maxMs);
      retryAt = now() + delayMs;
      if (failures === 1 || now() - lastLog > 30_000) {
        lastLog = now();
        logger.warn({ err: describeDatabaseError(error), ...context, retryInMs: delayMs }, options.failingMessage);
      }
    },
  };
}
