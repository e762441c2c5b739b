import { describe, expect, it } from 'vitest';
import { isInsideWindow, isValidTimeZone, nextWindowOpening } from './sending-window.js';

const weekdaysNineToFive = { days: [1, 2, 3, 4, 5], startHour: 9, endHour: 17, timeZone: 'Europe/Berlin' };

describe('sending window', () => {
  it('is open on weekdays between the hours, in the sender\'s time zone', () => {
    // Monday 2026-11-23 08:30 UTC = 09:30 in Berlin.
    expect(isInsideWindow(weekdaysNineToFive, new Date('2026-11-23T08:30:00Z'))).toBe(true);
    expect(isInsideWindow(weekdaysNineToFive, new Date('2026-11-23T07:30:00Z'))).toBe(false);
    expect(isInsideWindow(weekdaysNineToFive, new Date('2026-11-22T10:00:00Z'))).toBe(false); // Sunday
    expect(isInsideWindow(null, new Date())).toBe(true);
  });

  it('finds the next opening', () => {
    expect(nextWindowOpening(weekdaysNineToFive, new Date('2026-11-21T12:00:00Z')).toISOString()).toBe('2026-11-23T08:00:00.000Z');
  });

  it('checks time zones', () => {
    expect(isValidTimeZone('America/New_York')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus')).toBe(false);
  });
});
