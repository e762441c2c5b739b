import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCampaignSendIndex } from './campaign-send-index.js';

describe('campaign send index (clicks during an outage)', () => {
  it('finds every send of a held campaign by binary search, with its sent time and step, and nothing else', () => {
    const index = createCampaignSendIndex();
    const rows = Array.from({ length: 500 }, (_, i) => ({ id: randomUUID(), workspaceId: 'w1', step: i % 11, sentAtMs: i % 7 === 0 ? null : 1_000 + i }));
    index.set('c1', rows);
    for (const row of rows) expect(index.get(row.id)).toEqual({ workspaceId: 'w1', campaignId: 'c1', sentAtMs: row.sentAtMs, step: row.step });
    expect(index.get(randomUUID())).toBeUndefined();
    expect(index.get('not-a-uuid')).toBeUndefined();
    expect(index.get(rows[3]!.id.toUpperCase())).toMatchObject({ campaignId: 'c1' });
  });

  it('stays within its bound: the campaign loaded longest ago goes first; a reload replaces', () => {
    let clock = 0;
    const index = createCampaignSendIndex({ maxSends: 250, now: () => clock });
    const make = (n: number) => Array.from({ length: n }, () => ({ id: randomUUID(), workspaceId: 'w', step: 0, sentAtMs: 1 }));
    const a = make(100);
    const b = make(100);
    index.set('a', a);
    clock = 1;
    index.set('b', b);
    expect(index.size).toBe(200);
    clock = 2;
    const c = make(100);
    index.set('c', c);
    expect(index.size).toBe(200);
    expect(index.get(a[0]!.id)).toBeUndefined();
    expect(index.get(b[0]!.id)?.campaignId).toBe('b');
    index.set('b', make(10));
    expect(index.size).toBe(110);
    expect(index.loadedAt('b')).toBe(2);
    expect(index.get(b[0]!.id)).toBeUndefined();
  });
});
