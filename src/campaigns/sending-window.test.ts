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

  it('finds the opening on the local hour in zones whose offset is not whole hours', () => {
    const from = new Date('2026-11-21T12:00:00Z'); // a Saturday everywhere below
    // Monday 09:00 in Kolkata (+05:30) is 03:30 UTC; in Kathmandu (+05:45) 03:15; in Chatham (+13:45 in its summer) Sunday 19:15 UTC.
    expect(nextWindowOpening({ ...weekdaysNineToFive, timeZone: 'Asia/Kolkata' }, from).toISOString()).toBe('2026-11-23T03:30:00.000Z');
    expect(nextWindowOpening({ ...weekdaysNineToFive, timeZone: 'Asia/Kathmandu' }, from).toISOString()).toBe('2026-11-23T03:15:00.000Z');
    expect(nextWindowOpening({ ...weekdaysNineToFive, timeZone: 'Pacific/Chatham' }, from).toISOString()).toBe('2026-11-22T19:15:00.000Z');
  });

  it('checks time zones', () => {
    expect(isValidTimeZone('America/New_York')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus')).toBe(false);
  });
});
