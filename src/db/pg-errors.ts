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
