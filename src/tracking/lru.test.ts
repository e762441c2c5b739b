import { describe, expect, it } from 'vitest';
import { TtlLru } from './lru.js';

describe('TtlLru', () => {
  it('evicts the least recently used beyond its bound, and expires entries after their TTL', () => {
    let clock = 0;
    const lru = new TtlLru<string, number>(2, 10_000, () => clock);
    lru.set('a', 1);
    lru.set('b', 2);
    clock = 2_000;
    expect(lru.get('a')).toBe(1); // a is now the younger
    lru.set('c', 3);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    expect(lru.get('c')).toBe(3);
    lru.set('short', 4, 100);
    clock += 101;
    expect(lru.get('short')).toBeUndefined();
    clock += 20_000;
    expect(lru.get('a')).toBeUndefined();
    expect(lru.size).toBe(1); // c expired but is only removed when read
  });
});
