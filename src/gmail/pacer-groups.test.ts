import { describe, expect, it } from 'vitest';
import { createMemoryLimitStore, type LimitStore } from './limit-store.js';
import { MailboxPacer } from './pacer.js';

/** The memory store, counting what the pacer asks it for. */
function countingStore() {
  const inner = createMemoryLimitStore();
  const asked: number[] = [];
  const store: LimitStore = { ...inner, take: (id, units, send, policy, now, count) => (asked.push(count ?? 1), inner.take(id, units, send, policy, now, count)) };
  return { store, asked };
}

describe('MailboxPacer: sends that start together', () => {
  it('asks the store once for a round of unpaced sends, and runs every one of them', async () => {
    const { store, asked } = countingStore();
    const pacer = new MailboxPacer({ store, unitsPerMinute: 1e9 });
    const ran: number[] = [];
    await Promise.all([1, 2, 3, 4].map((i) => pacer.run('m1', 100, async () => ran.push(i), { send: true })));
    expect(asked).toEqual([4]);
    expect(ran.sort()).toEqual([1, 2, 3, 4]);
  });

  it('asks for no more than the burst holds: the rest wait for the next grant', async () => {
    const { store, asked } = countingStore();
    const pacer = new MailboxPacer({ store, unitsPerMinute: 1e9, burstUnits: 200 });
    const ran: number[] = [];
    await Promise.all([1, 2, 3].map((i) => pacer.run('m1', 100, async () => ran.push(i), { send: true })));
    // Two granted at once; the third asks alone (told to wait until the bucket refills, then granted).
    expect(asked[0]).toBe(2);
    expect(asked.slice(1).every((c) => c === 1)).toBe(true);
    expect(ran.sort()).toEqual([1, 2, 3]);
  });

  it('keeps paced sends one by one', async () => {
    const { store, asked } = countingStore();
    const pacer = new MailboxPacer({ store, unitsPerMinute: 1e9, sendsPerMinute: 600_000 });
    await Promise.all([1, 2, 3].map(() => pacer.run('m1', 100, async () => undefined, { send: true })));
    // One at a time (the later ones told to wait for the pace, then granted).
    expect(asked.length).toBeGreaterThanOrEqual(3);
    expect(asked.every((c) => c === 1)).toBe(true);
  });
});
