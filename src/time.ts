/** Lengths of time in milliseconds, named once for every feature that counts in days or hours. */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
