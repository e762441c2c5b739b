/** Postgres reports a unique-index conflict as SQLSTATE 23505; Drizzle wraps it in `cause`. */
export function isUniqueViolation(error: unknown): boolean {
  return sqlStateOf(error) === '23505';
}

/**
 * Runs `work`, and once more when it lost a race to a unique index (another request inserted the
 * same key between its read and its write): the second run reads the row the winner made.
 */
export async function onceMoreAfterUniqueViolation<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    return work();
  }
}

/**
 * The database gave up the transaction: a deadlock (40P01: it held what another wanted, the other
 * way round) or a serialization failure (40001). Nothing of that transaction was kept.
 */
export function isConcurrencyFailure(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state === '40P01' || state === '40001';
}

/**
 * Thrown by a transaction that found, once it held its locks, that what it read before taking
 * them had changed: it is given up like a serialization failure (SQLSTATE 40001), so that
 * againAfterConcurrencyFailure runs it again.
 */
export class ReadChangedBeforeLock extends Error {
  readonly code = '40001';
  constructor(what: string) {
    super(`${what} changed before its locks were taken; the transaction runs again`);
    this.name = 'ReadChangedBeforeLock';
  }
}

/**
 * Runs `work` — one transaction and nothing outside the database, so that a retry repeats nothing
 * already done — again when the database gave it up to another (isConcurrencyFailure), up to
 * `attempts` runs in all. For what must not be lost to a race, such as a recipient's opt-out.
 */
export async function againAfterConcurrencyFailure<T>(work: () => Promise<T>, attempts = 3): Promise<T> {
  for (let run = 1; ; run += 1) {
    try {
      return await work();
    } catch (error) {
      if (run >= attempts || !isConcurrencyFailure(error)) throw error;
    }
  }
}

/** The SQLSTATE of a database error (Drizzle wraps the driver's in `cause`). */
export function sqlStateOf(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: unknown } | null;
  // Five characters, at least one a digit: a SQLSTATE, not a Node error code (EPIPE).
  if (typeof e?.code === 'string' && /^(?=.*\d)[0-9A-Z]{5}$/.test(e.code)) return e.code;
  return e?.cause !== undefined && e.cause !== e ? sqlStateOf(e.cause) : undefined;
}

/**
 * Text the database will never take, however often it is retried: a NUL or a byte sequence it
 * cannot hold (22021, 22P05: in text, in JSON), a value longer than its column (22001), or too
 * large for an index (54000). Only these: other data exceptions (a bad uuid, date or number) are
 * our own bugs, which must fail loudly rather than be skipped, and a failure of the database
 * itself (a lost connection, a deadlock) is cured by a retry.
 */
const UNSTORABLE_TEXT = new Set(['22021', '22P05', '22001', '54000']);
export function isUnstorableValue(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && UNSTORABLE_TEXT.has(state);
}
