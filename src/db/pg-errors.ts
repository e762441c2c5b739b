/** Postgres reports a unique-index conflict as SQLSTATE 23505; Drizzle wraps it in `cause`. */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; cause?: unknown } | null;
  return e?.code === '23505' || (e?.cause !== undefined && e.cause !== e && isUniqueViolation(e.cause));
}
