/** Postgres reports a unique-index conflict as SQLSTATE 23505; Drizzle wraps it in `cause`. */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; cause?: unknown } | null;
  return e?.code === '23505' || (e?.cause !== undefined && e.cause !== e && isUniqueViolation(e.cause));
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

/** The SQLSTATE of a database error (Drizzle wraps the driver's in `cause`). */
export function sqlStateOf(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: unknown } | null;
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
  return e?.cause !== undefined && e.cause !== e ? sqlStateOf(e.cause) : undefined;
}

/**
 * A value the database will never take, however often it is retried: a data exception (class
 * 22: a NUL in text, an invalid escape in JSON…) or a value too large for an index (54000).
 * Not a failure of the database itself (a lost connection, a deadlock), which a retry can cure.
 */
export function isUnstorableValue(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && (state.startsWith('22') || state === '54000');
}
