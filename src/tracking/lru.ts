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
    /** Keep expired entries (until evicted) for `getStale`: the last known value, for when the source is down. */
    private readonly keepExpired = false,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    if (entry.expiresAt <= now) {
      if (!this.keepExpired) this.entries.delete(key);
      return undefined;
    }
    if (now - entry.movedAt > 1_000) {
      entry.movedAt = now;
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return entry.value;
  }

  /** The value even if it expired (kept only with `keepExpired`); does not refresh its age. */
  getStale(key: K): V | undefined {
    return this.entries.get(key)?.value;
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
