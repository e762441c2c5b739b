import type { SendingWindow } from '../db/schema.js';

const WEEKDAYS: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/** The weekday (1 = Monday) and hour at `at` in the window's time zone. */
function localTime(window: SendingWindow, at: Date): { day: number; hour: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: window.timeZone, weekday: 'short', hour: 'numeric', hourCycle: 'h23' }).formatToParts(at);
  return {
    day: WEEKDAYS[parts.find((p) => p.type === 'weekday')!.value]!,
    hour: Number(parts.find((p) => p.type === 'hour')!.value),
  };
}

export function isInsideWindow(window: SendingWindow | null | undefined, at: Date): boolean {
  if (!window) return true;
  const { day, hour } = localTime(window, at);
  return window.days.includes(day) && hour >= window.startHour && hour < window.endHour;
}

/** The next moment (to the hour) the window is open, or `at` itself when it is open now. */
export function nextWindowOpening(window: SendingWindow | null | undefined, at: Date): Date {
  if (isInsideWindow(window, at)) return at;
  const probe = new Date(at);
  probe.setUTCMinutes(0, 0, 0);
  for (let i = 0; i < 8 * 24; i += 1) {
    probe.setUTCHours(probe.getUTCHours() + 1);
    if (isInsideWindow(window, probe)) return new Date(probe);
  }
  return at;
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}
