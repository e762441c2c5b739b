import { describe, expect, it } from 'vitest';
import { nextAttemptAt, retryDelayMs } from './retry-schedule.js';

describe('webhook retry schedule', () => {
  it('doubles per attempt, with jitter inside [step/2, step]', () => {
    for (let attempt = 1; attempt <= 8; attempt += 1) {
      const step = 30_000 * 2 ** (attempt - 1);
      expect(retryDelayMs(attempt, 30_000, () => 0)).toBe(step / 2);
      expect(retryDelayMs(attempt, 30_000, () => 1)).toBe(step);
    }
  });

  it('caps a step at six hours', () => {
    expect(retryDelayMs(40, 30_000, () => 1)).toBe(6 * 3_600_000);
  });

  it('keeps retrying for the whole window (at least 24 h with the defaults), then gives up', () => {
    const createdAt = new Date('2026-01-01T00:00:00Z');
    const windowMs = 72 * 3_600_000;
    let now = createdAt;
    let attempt = 1;
    for (;;) {
      const next = nextAttemptAt({ attempt, createdAt, now, baseMs: 30_000, windowMs, random: () => 1 });
      if (!next) break;
      now = next;
      attempt += 1;
    }
    expect(now.getTime() - createdAt.getTime()).toBeGreaterThan(24 * 3_600_000);
    expect(now.getTime() - createdAt.getTime()).toBeLessThanOrEqual(windowMs);
    expect(attempt).toBeGreaterThan(10);
  });
});
