import { GmailError } from './gmail-errors.js';

/* Small helpers of the sync: failure wording, bounded concurrency, safe error logging. */

/** The reason shown as the mailbox's `sync.lastError`: built from the error kind only, never from request data. */
export function describeSyncFailure(error: GmailError): string {
  switch (error.kind) {
    case 'auth_revoked':
      return 'auth_revoked: Google no longer accepts this mailbox’s access; reconnect it to resume syncing';
    case 'rate_limited':
      return `rate_limited: Gmail is rate limiting this mailbox${error.retryAfterSeconds ? ` (retry after ${error.retryAfterSeconds}s)` : ''}; sync resumes at the next poll`;
    case 'temporary':
      return 'temporary: Gmail did not answer; sync resumes at the next poll';
    case 'not_found':
      return 'not_found: Gmail could not find what sync asked for';
    default:
      return `permanent: Gmail refused a sync request${error.status ? ` (HTTP ${error.status}${error.reason ? `, ${error.reason}` : ''})` : ''}`;
  }
}

/**
 * Runs `work` over `items` with at most `limit` at a time. After the first failure no new
 * item starts; the ones in flight finish (what they wrote stays), then that failure is thrown.
 */
export async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

/**
 * What of an unexpected error may be logged: a failed query's message quotes its parameters
 * (subjects, addresses), so only the error's name and database code are kept.
 */
export function safeErrorFields(error: unknown): { errorName?: string; code?: string } {
  if (!(error instanceof Error)) return {};
  const code = (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code;
  return { errorName: error.name, ...(typeof code === 'string' ? { code } : {}) };
}

export function parseDate(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

