import { describe, expect, it } from 'vitest';
import { createClassifier } from './classify.js';
import { createRecorder, type QueuedHit } from './recorder.js';
import { contentLinkCountOf, createSendCache } from './send-cache.js';
import type { EventColumns } from './event-columns.js';
import { HitColumns } from './hit-columns.js';
import type { LinkRow, SendRow, TrackingEventRow } from './tracking.repo.js';

const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const SEND = '11111111-1111-4111-8111-111111111111';
/** The same campaign's follow-up (step 1) to the same person: its mail holds links 4 and 5 only. */
const FOLLOW_UP = '33333333-3333-4333-8333-333333333333';
const CAMPAIGN = '22222222-2222-4222-8222-222222222222';
const T0 = Date.UTC(2026, 10, 3, 12);

/** A prepared batch's events as rows (every column of each), to compare as objects. */
const eventRowsOf = (columns: EventColumns): TrackingEventRow[] =>
  columns.id.map((_, i) => Object.fromEntries(Object.entries(columns).map(([key, values]) => [key, (values as unknown[])[i]])) as unknown as TrackingEventRow);

function setup() {
  let clock = T0;
  const queries: string[] = [];
  const sends: SendRow[] = [
    { id: SEND, workspaceId: 'w', campaignId: CAMPAIGN, sentAt: new Date(T0 - 3600_000), claimedAt: null, step: 0 },
    { id: FOLLOW_UP, workspaceId: 'w', campaignId: CAMPAIGN, sentAt: new Date(T0 - 3600_000), claimedAt: null, step: 1 },
  ];
  const links: LinkRow[] = [0, 1, 2].map((i) => ({ campaignId: CAMPAIGN, linkIndex: i, url: `https://shop.example.com/${i}`, honeypot: false, steps: [0] }));
  links.push({ campaignId: CAMPAIGN, linkIndex: 3, url: 'https://t.example.net/', honeypot: true, steps: null });
  for (const i of [4, 5]) links.push({ campaignId: CAMPAIGN, linkIndex: i, url: `https://shop.example.com/${i}`, honeypot: false, steps: [1] });
  const cache = createSendCache({
    now: () => clock,
    repo: {
      async findSendWithLinks(id) {
        queries.push(`send+links ${id}`);
        const send = sends.find((s) => s.id === id);
        return send && { send, links };
      },
      async findSends(ids) {
        queries.push(`sends ${ids.length}`);
        return sends.filter((s) => ids.includes(s.id));
      },
      async findLinks(campaignIds) {
        queries.push(`links ${campaignIds.length}`);
        return links.filter((l) => campaignIds.includes(l.campaignId));
      },
    },
  });
  const queued: QueuedHit[] = [];
  const unresolved: string[] = [];
  const recorder = createRecorder({
    cache,
    classify: createClassifier({ isAppleMppIp: () => false }),
    push: (item) => queued.push(item),
    onUnresolved: (type) => unresolved.push(type),
    now: () => clock,
    newId: (() => {
      let n = 0;
      return () => `id-${(n += 1)}`;
    })(),
  });
  /** The queued hits as the writer takes them (by column), prepared; the events read back as rows. */
  const batchOf = (items: QueuedHit[]) => {
    const queue = new HitColumns();
    for (const item of items) queue.push(item);
    return queue.take(items.length);
  };
  const rows = async () => eventRowsOf(await recorder.prepare(batchOf(queued.splice(0))));
  return { recorder, cache, queries, unresolved, rows, queued, batchOf, tick: (ms: number) => (clock += ms), now: () => clock };
}

describe('recorder', () => {
  it('resolves queued opens in one batch query at flush time and drops unknown sends with a count', async () => {
    const { recorder, queries, unresolved, rows } = setup();
    recorder.open(SEND, { atMs: T0, method: 'GET', userAgent: CHROME, ip: '203.0.113.9' });
    recorder.open(SEND, { atMs: T0 + 1, method: 'HEAD', userAgent: CHROME });
    recorder.open('99999999-9999-4999-8999-999999999999', { atMs: T0, method: 'GET', userAgent: CHROME });
    const out = await rows();
    expect(queries).toEqual(['sends 2', 'links 1']);
    expect(out.map((r) => [r.type, r.classification, r.reasons])).toEqual([
      ['open', 'human', ['no_machine_signal']],
      ['open', 'machine', ['head_request']],
    ]);
    expect(out[0]).toMatchObject({ sendId: SEND, campaignId: CAMPAIGN, workspaceId: 'w', linkIndex: null, ip: '203.0.113.9', userAgent: CHROME });
    expect(unresolved).toEqual(['open']);
  });

  it('an open whose send is gone is counted once, not again when its batch is retried', async () => {
    const { recorder, queued, batchOf, unresolved } = setup();
    recorder.open('99999999-9999-4999-8999-999999999999', { atMs: T0, method: 'GET', userAgent: CHROME });
    recorder.open(SEND, { atMs: T0, method: 'GET', userAgent: CHROME });
    const batch = batchOf(queued.splice(0));
    expect((await recorder.prepare(batch)).id).toHaveLength(1);
    expect((await recorder.prepare(batch)).id).toHaveLength(1); // the write failed: prepared again
    expect(unresolved).toEqual(['open']);
  });

  it('holds clicks for the burst window and marks every click of a scanner burst', async () => {
    const { recorder, cache, rows, tick, now } = setup();
    const send = (await cache.resolve(SEND))!;
    // A scanner with a browser agent follows all three links within 300 ms.
    for (const index of [0, 1, 2]) {
      recorder.click(send, index, { atMs: now(), method: 'GET', userAgent: CHROME });
      tick(150);
    }
    expect(recorder.held).toBe(3);
    expect(await rows()).toEqual([]); // nothing released yet
    tick(1_000);
    recorder.releaseAll();
    const burst = await rows();
    expect(burst.map((r) => [r.linkIndex, r.classification, r.reasons])).toEqual([
      [0, 'machine', ['all_links_at_once']],
      [1, 'machine', ['all_links_at_once']],
      [2, 'machine', ['all_links_at_once']],
    ]);

    // A person, a minute later, clicks one link, then another 20 s after.
    tick(60_000);
    recorder.click(send, 1, { atMs: now(), method: 'GET', userAgent: CHROME });
    tick(20_000);
    recorder.click(send, 2, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.close();
    expect((await rows()).map((r) => [r.linkIndex, r.classification])).toEqual([
      [1, 'human'],
      [2, 'human'],
    ]);
  });

  it('the burst needs the links of the mail that was hit (its step), not of the whole sequence', async () => {
    const { recorder, cache, rows, now } = setup();
    const first = (await cache.resolve(SEND))!;
    const followUp = (await cache.resolve(FOLLOW_UP))!;
    expect([contentLinkCountOf(first), contentLinkCountOf(followUp)]).toEqual([3, 2]);
    // Both links of the follow-up within 100 ms: every link of that mail at once.
    recorder.click(followUp, 4, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.click(followUp, 5, { atMs: now() + 100, method: 'GET', userAgent: CHROME });
    // Two of the first mail's three links at once: a quick person, not yet every link.
    recorder.click(first, 0, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.click(first, 1, { atMs: now() + 100, method: 'GET', userAgent: CHROME });
    recorder.releaseAll();
    expect((await rows()).map((r) => [r.linkIndex, r.classification])).toEqual([
      [4, 'machine'],
      [5, 'machine'],
      [0, 'human'],
      [1, 'human'],
    ]);
    recorder.close();
  });

  it('links whose steps are unknown (written before migration 0057) count in every step', async () => {
    const link = (linkIndex: number, steps: number[] | null): LinkRow => ({ campaignId: CAMPAIGN, linkIndex, url: `https://shop.example.com/${linkIndex}`, honeypot: false, steps });
    const links = [link(0, null), link(1, null), link(2, [1]), { ...link(3, null), honeypot: true }];
    const sendOf = (id: string, step: number): SendRow => ({ id, workspaceId: 'w', campaignId: CAMPAIGN, sentAt: new Date(T0), claimedAt: null, step });
    const cache = createSendCache({
      repo: {
        findSendWithLinks: async (id) => ({ send: sendOf(id, id === SEND ? 0 : 1), links }),
        findSends: async () => [],
        findLinks: async () => links,
      },
    });
    expect([contentLinkCountOf((await cache.resolve(SEND))!), contentLinkCountOf((await cache.resolve(FOLLOW_UP))!)]).toEqual([2, 3]);
  });

  it('a honeypot hit is a machine and does not count as a content link', async () => {
    const { recorder, cache, rows, now } = setup();
    const send = (await cache.resolve(SEND))!;
    recorder.click(send, 3, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.click(send, 0, { atMs: now() + 10, method: 'GET', userAgent: CHROME });
    recorder.releaseAll();
    const out: TrackingEventRow[] = await rows();
    expect(out.map((r) => [r.linkIndex, r.classification, r.reasons])).toEqual([
      [3, 'machine', ['honeypot']],
      [0, 'human', ['no_machine_signal']],
    ]);
    recorder.close();
  });

  it('a honeypot or HEAD hit marks the same client\'s clicks of the send within 10 s, before or after, and no one else\'s', async () => {
    const { recorder, cache, rows, tick, now } = setup();
    const send = (await cache.resolve(SEND))!;
    const scanner = { method: 'GET', userAgent: CHROME, ip: '40.94.32.5' };
    recorder.click(send, 0, { atMs: now(), ...scanner }); // 9 s before the honeypot hit
    tick(9_000);
    recorder.click(send, 0, { atMs: now(), ...scanner, ip: '203.0.113.9' }); // a person elsewhere
    recorder.click(send, 0, { atMs: now(), ...scanner, userAgent: `${CHROME} Edg/124.0` }); // another agent
    recorder.click(send, 3, { atMs: now(), ...scanner }); // the honeypot
    tick(9_500);
    recorder.click(send, 1, { atMs: now(), ...scanner }); // 9.5 s after
    tick(1_000);
    recorder.click(send, 2, { atMs: now(), ...scanner }); // 10.5 s after: too far
    recorder.click(send, 2, { atMs: now(), ...scanner, method: 'HEAD' }); // a HEAD: machine itself, and evidence
    tick(8_000);
    recorder.click(send, 1, { atMs: now(), ...scanner }); // 8 s after the HEAD
    recorder.close();
    expect((await rows()).map((r) => [r.linkIndex, r.ip, r.method, r.classification, r.reasons])).toEqual([
      [0, '40.94.32.5', 'GET', 'machine', ['same_client_as_machine']],
      [0, '203.0.113.9', 'GET', 'human', ['no_machine_signal']],
      [0, '40.94.32.5', 'GET', 'human', ['no_machine_signal']],
      [3, '40.94.32.5', 'GET', 'machine', ['honeypot']],
      [1, '40.94.32.5', 'GET', 'machine', ['same_client_as_machine']],
      [2, '40.94.32.5', 'GET', 'machine', ['same_client_as_machine']],
      [2, '40.94.32.5', 'HEAD', 'machine', ['head_request']],
      [1, '40.94.32.5', 'GET', 'machine', ['same_client_as_machine']],
    ]);
  });

  it('holds clicks 10 s (the same-client window), and a pixel HEAD is evidence too', async () => {
    const { recorder, cache, queued, tick, now } = setup();
    const send = (await cache.resolve(SEND))!;
    recorder.open(SEND, { atMs: now(), method: 'HEAD', userAgent: CHROME, ip: '40.94.32.5' });
    recorder.click(send, 0, { atMs: now() + 1, method: 'GET', userAgent: CHROME, ip: '40.94.32.5' });
    tick(9_000);
    await new Promise((r) => setTimeout(r, 1_100)); // the release timer runs; the click is not due
    expect(recorder.held).toBe(1);
    tick(2_000);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(recorder.held).toBe(0);
    expect(queued.map((q) => (q.kind === 'click' ? ['click', q.sameClientAsMachine] : ['open', q.hit.method]))).toEqual([
      ['open', 'HEAD'],
      ['click', true],
    ]);
    recorder.close();
  });

  it('a batch prepared again (its write failed and is retried) keeps the ids it was given the first time', async () => {
    const { recorder, cache, queued, batchOf, now } = setup();
    const send = (await cache.resolve(SEND))!;
    recorder.open(SEND, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.click(send, 0, { atMs: now(), method: 'GET', userAgent: CHROME });
    recorder.releaseAll();
    const batch = batchOf(queued.splice(0));
    const first = (await recorder.prepare(batch)).id;
    const again = (await recorder.prepare(batch)).id;
    expect(first).toEqual(['id-1', 'id-2']);
    expect(again).toEqual(first);
    recorder.close();
  });
  it('close() (a shutdown) judges every held click now, and a click answered after it is judged at once, not held', async () => {
    const { recorder, cache, queued, now } = setup();
    const send = (await cache.resolve(SEND))!;
    recorder.click(send, 0, { atMs: now(), method: 'GET', userAgent: CHROME, ip: '198.51.100.7' });
    recorder.click(send, 1, { atMs: now(), method: 'GET', userAgent: CHROME, ip: '198.51.100.7' });
    expect(recorder.held).toBe(2);
    expect(recorder.close()).toBe(2);
    expect(queued.filter((q) => q.kind === 'click')).toHaveLength(2);
    // A request that was in flight at the stop: nobody would release it later.
    recorder.click(send, 2, { atMs: now(), method: 'GET', userAgent: CHROME, ip: '198.51.100.7' });
    expect(recorder.held).toBe(0);
    expect(queued.filter((q) => q.kind === 'click')).toHaveLength(3);
  });
});
