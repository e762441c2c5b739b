import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../test/helpers/campaign-fixtures.js';
import type { Classification, HitType } from './classify.js';
import { countWindow, parsePending, summarizeSends, type PendingBatch } from './rollup-window.js';
import type { RollupPlan } from './rollups.js';

const emptyPlan = (): RollupPlan => ({ campaign: new Map(), recipient: new Map(), states: new Map(), recheck: [], lookups: [] });

describe('a rollup window summed in JavaScript', () => {
  it('reads a pending row from its text columns: links null as empty, times in whole milliseconds, stored order kept', () => {
    const batch = parsePending({
      id: '7',
      events: 3,
      workspace_id: 'w',
      campaign_id: 'c',
      send_ids: 's1,s2,s1',
      at_ms: '1764886562123.000000,1764886562124.999999,1764886562100',
      types: 'open,click,open',
      link_indexes: ',3,',
      classifications: 'machine,human,human',
    });
    expect(batch).toEqual({
      id: '7',
      events: 3,
      workspaceId: 'w',
      campaignId: 'c',
      sendIds: ['s1', 's2', 's1'],
      atMs: [1764886562123, 1764886562125, 1764886562100],
      types: ['open', 'click', 'open'],
      linkIndexes: [null, 3, null],
      classifications: ['machine', 'human', 'human'],
    });
    expect(summarizeSends([batch]).get('s1')).toEqual({
      sendId: 's1',
      workspaceId: 'w',
      campaignId: 'c',
      firstHumanClickMs: null,
      firstHumanOpenMs: 1764886562100,
      firstNonHumanOpenMs: 1764886562123,
    });
  });

  it('a one-event row keeps one value per column, its null link too', () => {
    const batch = parsePending({ id: '8', events: 1, workspace_id: 'w', campaign_id: 'c', send_ids: 's1', at_ms: '5', types: 'open', link_indexes: '', classifications: 'human' });
    expect(batch.linkIndexes).toEqual([null]);
    expect(batch.sendIds).toEqual(['s1']);
  });

  it('counts each event of a send that still exists once per campaign row and, human, per recipient row; the same as counting event by event', () => {
    const rand = seededRandom(14);
    const pick = <T>(values: readonly T[]) => values[Math.floor(rand() * values.length)]!;
    const sends = Array.from({ length: 40 }, (_, i) => `send-${i}`);
    // Sends 0-4 are gone (purged meanwhile): their events are not counted.
    const recipientOf = new Map(sends.slice(5).map((send, i) => [send, `recipient-${i % 25}`]));
    const batches: PendingBatch[] = ['c1', 'c2', 'c1'].map((campaignId, b) => {
      const types = Array.from({ length: 300 }, () => pick<HitType>(['open', 'open', 'click']));
      return {
        id: String(b),
        events: 300,
        workspaceId: 'w',
        campaignId,
        sendIds: types.map(() => pick(sends)),
        atMs: types.map((_, i) => 1_000 + i),
        types,
        linkIndexes: types.map((type) => (type === 'click' ? pick([0, 1, 2, 7]) : null)),
        classifications: types.map(() => pick<Classification>(['human', 'machine', 'unknown'])),
      };
    });

    const plan = emptyPlan();
    const counted = countWindow(plan, batches, recipientOf);

    const campaign = new Map<string, number>();
    const recipient = new Map<string, number>();
    const add = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
    let expected = 0;
    for (const batch of batches) {
      batch.sendIds.forEach((sendId, i) => {
        const recipientId = recipientOf.get(sendId);
        if (!recipientId) return;
        expected += 1;
        const links = batch.types[i] === 'click' ? [-1, batch.linkIndexes[i]!] : [-1];
        for (const link of links) {
          add(campaign, `${batch.campaignId}|${batch.types[i]}|${link}|${batch.classifications[i]}`);
          if (batch.classifications[i] === 'human') add(recipient, `${batch.campaignId}|${recipientId}|${batch.types[i]}|${link}`);
        }
      });
    }
    expect(counted).toBe(expected);
    expect(counted).toBeLessThan(900);
    const campaignCounts = new Map<string, number>();
    for (const delta of plan.campaign.values()) {
      for (const verdict of ['human', 'machine', 'unknown'] as const) {
        if (delta[verdict] !== 0) campaignCounts.set(`${delta.campaignId}|${delta.type}|${delta.linkIndex}|${verdict}`, delta[verdict]);
      }
    }
    expect(campaignCounts).toEqual(campaign);
    expect(new Map([...plan.recipient.values()].map((r) => [`${r.campaignId}|${r.recipientId}|${r.type}|${r.linkIndex}`, r.humanEvents]))).toEqual(recipient);
  });
});
