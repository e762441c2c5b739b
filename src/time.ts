/** Lengths of time in milliseconds, named once for every feature that counts in days or hours. */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/**
 * Whether `work` settles (resolves or rejects) within `timeoutMs` (infinite: waits as long as it
 * takes). It is not cancelled: a stop's deadline uses this to stop waiting for what it cannot cut
 * short, and says so.
 */
export async function settlesWithin(work: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  const settled = work.then(
    () => true,
    () => true,
  );
  if (!Number.isFinite(timeoutMs)) return settled;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs))));
  return Promise.race([settled, expired]).finally(() => clearTimeout(timer));
}
