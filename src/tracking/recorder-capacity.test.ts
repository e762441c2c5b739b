import { expect, it } from 'vitest';
import { createClassifier } from './classify.js';
import { createRecorder, type QueuedHit } from './recorder.js';
import type { CampaignLinks, ResolvedSend } from './send-cache.js';

/*
 * A reviewer's finding: clicks are held 10 s (SAME_CLIENT_WINDOW_MS; was 1 s) and up to 200,000 of them,
 * but the recent clicks the burst rule needs were kept for at most 50,000 sends
 * (`recentClicks`, and likewise `machineHits`). A send's entry must outlive the hold of its last
 * click (~12 s), so from ~4,200 clicking sends a second (50,000 / 12 s; EVENT-WRITER.md speaks of
 * "thousands of hits a second") a scanner's burst is evicted before its clicks are judged, and
 * the scanner's three clicks are stored as three human ones. With the 1 s hold the same loss
 * needed ~25,000 clicking sends a second. The neighbour maps are now sized to the held-clicks
 * bound (recorder.ts: the larger of 50,000 sends and maxHeld), so the two agree.
 */
const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const T0 = Date.UTC(2026, 10, 3, 12);

it('a scanner burst on one send is still a burst when 6,000 other sends are clicked each second of its hold', () => {
  let clock = T0;
  const links: CampaignLinks = {
    byIndex: new Map([0, 1, 2].map((i) => [i, { url: `https://shop.example.com/${i}`, location: `https://shop.example.com/${i}`, honeypot: false }])),
    contentLinksByStep: new Map([[0, 3]]),
    contentLinksInEveryStep: 0,
    loadedAtMs: T0,
  };
  const sendOf = (id: string): ResolvedSend => ({ sendId: id, workspaceId: 'w', campaignId: 'c', step: 0, sentAtMs: T0 - 3_600_000, links });
  const released: QueuedHit[] = [];
  const recorder = createRecorder({ cache: {} as never, classify: createClassifier({ isAppleMppIp: () => false }), push: (item) => released.push(item), now: () => clock });

  const scanned = sendOf('scanned');
  for (const link of [0, 1, 2]) recorder.click(scanned, link, { atMs: clock + link * 100, method: 'GET', ip: '198.51.100.7', userAgent: CHROME });
  // 10 s of ordinary traffic: 6,000 other sends clicked each second (held 200,000 at most: 60,000 is well under).
  for (let second = 0; second < 10; second += 1) {
    clock += 1_000;
    for (let i = 0; i < 6_000; i += 1) recorder.click(sendOf(`s${second}-${i}`), 0, { atMs: clock, method: 'GET', ip: `203.0.113.${i % 250}`, userAgent: CHROME });
  }
  clock += 1_000;
  recorder.releaseAll();
  const burst = released.filter((h) => h.kind === 'click' && h.send.sendId === 'scanned').map((h) => (h.kind === 'click' ? h.linkBurst : undefined));
  expect(burst).toEqual([true, true, true]);
  recorder.close();
});
