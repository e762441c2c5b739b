/**
 * A bounded map with least-recently-used eviction and a time to live per entry.
 * Map keeps insertion order, so re-inserting on read moves an entry to the young end
 * and the first key is always the one to evict. A hot entry is moved at most once a
 * second (hit paths read the same keys thousands of times a second; the order only
 * needs to be roughly right).
 */
export class TtlLru<K, V> {
  private readonly entries = new Map<K, { value: V; expiresAt: number; movedAt: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly defaultTtlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    if (entry.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    if (now - entry.movedAt > 1_000) {
      entry.movedAt = now;
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return entry.value;
  }

  has(key: K): boolean {
    return this.get(key) !== undefined;
  }

  set(key: K, value: V, ttlMs = this.defaultTtlMs): void {
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: now + ttlMs, movedAt: now });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as K;
      this.entries.delete(oldest);
    }
  }

  delete(key: K): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
