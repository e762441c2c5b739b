import { describe, expect, it } from 'vitest';
import { HitColumns, type HitBatch } from './hit-columns.js';
import type { QueuedHit } from './recorder.js';
import type { ResolvedSend } from './send-cache.js';

const send = { sendId: 's-1', workspaceId: 'w', campaignId: 'c' } as unknown as ResolvedSend;
const open = (i: number): QueuedHit => ({ kind: 'open', sendId: `send-${i}`, hit: { atMs: 1_000 + i, method: i % 2 ? 'HEAD' : 'GET', ip: i % 3 ? `10.0.0.${i % 250}` : undefined, userAgent: `agent ${i % 7}` } });
const click = (i: number): QueuedHit => ({ kind: 'click', id: `id-${i}`, send, linkIndex: i % 5, honeypot: i % 2 === 0, linkBurst: i % 3 === 0, hit: { atMs: 1_000 + i, method: 'GET', ip: '203.0.113.9', userAgent: undefined } });
const mixed = (i: number) => (i % 4 === 0 ? click(i) : open(i));
/** A taken batch's hit at `at` as it was pushed, read through what the recorder reads (its accessors and columns). */
function itemOf(batch: HitBatch, at: number): QueuedHit {
  const { atMs, method, ip, userAgent, id, linkIndex } = batch.columns;
  const hit = { atMs: atMs[at]!, method: method[at]!, ip: ip[at], userAgent: userAgent[at] };
  return batch.isClick(at)
    ? { kind: 'click', id: id[at], send: batch.sendAt(at), linkIndex: linkIndex[at]!, honeypot: batch.isHoneypot(at), linkBurst: batch.isLinkBurst(at), hit }
    : { kind: 'open', id: id[at], sendId: batch.sendIdAt(at), hit };
}
/** A taken batch's hits, as they were pushed. */
const itemsOf = (batch: HitBatch) => Array.from({ length: batch.length }, (_, i) => itemOf(batch, i));

describe('HitColumns (the tracking buffer, by column)', () => {
  it('gives back every hit as it was pushed, in order, across many chunks; take, drop and head time at every step', () => {
    const queue = new HitColumns();
    const total = 10_000; // several chunks of 2,048
    for (let i = 0; i < total; i += 1) queue.push(mixed(i));
    expect(queue.length).toBe(total);
    expect(queue.headAtMs()).toBe(1_000);

    const first = itemsOf(queue.take(3_000));
    expect(first).toEqual(Array.from({ length: 3_000 }, (_, i) => ({ id: undefined, ...mixed(i) })));
    expect(queue.dropOldest(1_500)).toBe(1_500);
    expect(queue.headAtMs()).toBe(1_000 + 4_500);
    // Pushed while others wait: still after them.
    for (let i = total; i < total + 100; i += 1) queue.push(mixed(i));
    const rest = itemsOf(queue.take(1_000_000));
    expect(rest).toEqual(Array.from({ length: total + 100 - 4_500 }, (_, i) => ({ id: undefined, ...mixed(4_500 + i) })));
    expect(queue.length).toBe(0);
    expect(queue.headAtMs()).toBeUndefined();
    expect(queue.take(10).length).toBe(0);
    expect(queue.dropOldest(10)).toBe(0);
  });

  it('keeps an id given, the flags of a click and a missing address; reused after emptying', () => {
    const queue = new HitColumns();
    for (let round = 0; round < 3; round += 1) {
      queue.push(click(6)); // honeypot, burst
      queue.push(click(1)); // neither
      queue.push(open(0)); // no address
      expect(itemsOf(queue.take(5))).toEqual([
        { ...click(6), id: 'id-6' },
        { ...click(1), id: 'id-1' },
        { ...open(0), id: undefined },
      ]);
      expect(queue.length).toBe(0);
    }
  });

  it('a batch topped up with a newer one (a failed write retried) is the old hits, ids kept, then the new', () => {
    const queue = new HitColumns();
    for (let i = 0; i < 5; i += 1) queue.push(mixed(i));
    const failed = queue.take(3);
    failed.columns.id[1] = 'chosen-at-first-prepare';
    for (let i = 5; i < 8; i += 1) queue.push(mixed(i));
    const retried = failed.concat(queue.take(10));
    expect(retried.length).toBe(8);
    expect(itemsOf(retried)).toEqual(Array.from({ length: 8 }, (_, i) => ({ id: undefined, ...mixed(i), ...(i === 1 ? { id: 'chosen-at-first-prepare' } : {}) })));
    expect(queue.length).toBe(0);
  });
});
