import { randomUUID } from 'node:crypto';
import type { Classification } from '../../src/tracking/classify.js';
import type { TrackingEventRow } from '../../src/tracking/tracking.repo.js';
import type { seedSentCampaign } from './seed-campaign.js';

const CLASSES: Classification[] = ['human', 'machine', 'unknown'];

/**
 * Random opens and clicks on a seeded campaign's sends, every verdict, over few distinct times
 * per send (40 seconds from `baseMs`), so that ties and "at or before the click" are exercised.
 */
export function randomTrackingEvents(rand: () => number, workspaceId: string, seeded: Awaited<ReturnType<typeof seedSentCampaign>>, count: number, baseMs: number): TrackingEventRow[] {
  const events: TrackingEventRow[] = [];
  for (let i = 0; i < count; i += 1) {
    const send = seeded.sends[Math.floor(rand() * seeded.sends.length)]!;
    const click = rand() < 0.4;
    const atMs = baseMs + Math.floor(rand() * 40) * 1000;
    events.push({
      id: randomUUID(),
      workspaceId,
      campaignId: seeded.campaignId,
      sendId: send.id,
      type: click ? 'click' : 'open',
      linkIndex: click ? Math.floor(rand() * (seeded.links + 1)) : null,
      atMs,
      method: 'GET',
      ip: '203.0.113.9',
      userAgent: 'test',
      classification: CLASSES[Math.floor(rand() * 3)]!,
      reasons: ['test'],
    });
  }
  return events;
}
