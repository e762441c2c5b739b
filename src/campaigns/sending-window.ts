import type { SendingWindow } from '../db/schema.js';

const WEEKDAYS: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/** One formatter per time zone: making one costs far more than using it, and the send loop asks often. */
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: 'numeric', hourCycle: 'h23' });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** The weekday (1 = Monday) and hour at `at` in the window's time zone. */
function localTime(window: SendingWindow, at: Date): { day: number; hour: number } {
  const parts = formatterFor(window.timeZone).formatToParts(at);
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

const QUARTER_HOUR_MS = 15 * 60 * 1000;

/**
 * The next moment the window is open, or `at` itself when it is open now. A local hour starts on a
 * quarter of a UTC hour in every zone there is (India +05:30, Nepal +05:45, Chatham +12:45), so
 * the search steps by 15 minutes: stepping by UTC hours named an opening 30 or 45 minutes late there.
 */
export function nextWindowOpening(window: SendingWindow | null | undefined, at: Date): Date {
  if (isInsideWindow(window, at)) return at;
  let probe = Math.floor(at.getTime() / QUARTER_HOUR_MS) * QUARTER_HOUR_MS;
  for (let i = 0; i < 8 * 24 * 4; i += 1) {
    probe += QUARTER_HOUR_MS;
    if (isInsideWindow(window, new Date(probe))) return new Date(probe);
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
