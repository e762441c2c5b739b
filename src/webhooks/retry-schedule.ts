/*
 * When a failed delivery is tried again: exponential backoff from `baseMs`, doubling per
 * attempt up to a 6-hour step, with "equal jitter" (half the step fixed, half random) so
 * that a receiver coming back up is not hit by every delivery at the same instant. After
 * the retry window (counted from the delivery's creation) the delivery is `failed`.
 *
 * With the defaults (30 s base, 72 h window): about 0.5, 1, 2, 4, 8, 16, 32 min, 1.1, 2.1,
 * 4.3 h, then every ~6 h — 19 attempts or so over three days.
 */

const MAX_STEP_MS = 6 * 3_600_000;

export function retryDelayMs(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const step = Math.min(MAX_STEP_MS, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

/** The next attempt after failed attempt number `attempt`, or null when it would fall past the window. */
export function nextAttemptAt(input: { attempt: number; createdAt: Date; now: Date; baseMs: number; windowMs: number; random?: () => number }): Date | null {
  const at = new Date(input.now.getTime() + retryDelayMs(input.attempt, input.baseMs, input.random));
  return at.getTime() <= input.createdAt.getTime() + input.windowMs ? at : null;
}
