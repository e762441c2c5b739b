import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { pathOf, trackingHits, UA, type Seeded } from '../helpers/tracking-hits.js';

/*
 * Issue 5, tracking half, the two URLs: the pixel always answers (and records only valid
 * opens), and a click goes only where the campaign says, never anywhere else. Recording and
 * classification: tracking-recording.test.ts; stats: tracking-stats.test.ts.
 */

const ctx = useAppWithOwner();
const { tracking, urls, seedCampaign, hit, eventsOf, expectPixel } = trackingHits(ctx);

/** Sends the path exactly as written (fetch would normalise backslashes and dot segments). */
function rawGet(path: string): Promise<{ status: number; location?: string; body: string }> {
  const { port } = new URL(ctx.app.baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: { 'user-agent': UA.chrome } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += String(chunk)));
      res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GET /t/o/:token — the pixel answers whatever happens', () => {
  let seeded: Seeded;
  beforeAll(async () => {
    seeded = await seedCampaign(ctx.owner.workspaceId);
  });

  it('valid, invalid, forged, foreign-key, wrong-kind and unknown-send tokens all get the same 43-byte GIF', async () => {
    const valid = pathOf(urls().openPixel(seeded.sends[0]!.id));
    const token = valid.slice('/t/o/'.length, -'.gif'.length);
    const tampered = Buffer.from(token, 'base64url');
    tampered[5]! ^= 0xff;
    const foreign = createTokenCodec([{ version: 'v1', secret: 'another-secret-that-is-long-enough-000' }]).encode({ kind: 'open', sendId: seeded.sends[0]!.id });
    const paths = [
      valid,
      `/t/o/${token}`,
      `/t/o/${tampered.toString('base64url')}.gif`,
      `/t/o/${foreign}.gif`,
      `/t/o/${pathOf(urls().click(seeded.sends[0]!.id, 0)).slice(5)}.gif`,
      `/t/o/${pathOf(urls().openPixel(randomUUID())).slice(5)}`,
      '/t/o/not-a-token!.gif',
      '/t/o/',
      `/t/o/${'A'.repeat(500)}.gif`,
      `${valid}?url=https://evil.example/`,
    ];
    for (const path of paths) expectPixel(await hit(path));
    expectPixel(await hit(valid, { method: 'HEAD' }), 'HEAD');
  });

  it('only the valid opens are recorded, after a flush, with raw facts and a classification', async () => {
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    // GET valid (.gif), GET valid (no .gif), GET valid with a query, HEAD valid.
    expect(events.filter((e) => e.type === 'open')).toHaveLength(4);
    expect(events.map((e) => [e.method, e.classification, e.reasons]).sort()).toEqual([
      ['GET', 'human', ['no_machine_signal']],
      ['GET', 'human', ['no_machine_signal']],
      ['GET', 'human', ['no_machine_signal']],
      ['HEAD', 'machine', ['head_request']],
    ]);
    expect(events.find((e) => e.method === 'GET')).toMatchObject({ send_id: seeded.sends[0]!.id, link_index: null, ip: '127.0.0.1', user_agent: UA.chrome });
  });

  it('answers other methods with 405, not a redirect or a page', async () => {
    const res = await hit(pathOf(urls().openPixel(seeded.sends[0]!.id)), { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('a request target in absolute form (RFC 9112 §3.2.2, as a proxy may send it)', () => {
  it('is answered like its path: the pixel, and the click to its stored link', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId);
    const pixel = await rawGet(`http://localhost${pathOf(urls().openPixel(seeded.sends[0]!.id))}`);
    expect(pixel.status).toBe(200);
    const click = await rawGet(`http://localhost${pathOf(urls().click(seeded.sends[0]!.id, 0))}`);
    expect(click.status).toBe(302);
    expect(click.location).toBe(seeded.urls[0]);
  });
});

describe('GET /t/c/:token — a click goes only to the stored link (invariant 4, no open redirect)', () => {
  let seeded: Seeded;
  let other: Seeded;
  beforeAll(async () => {
    seeded = await seedCampaign(ctx.owner.workspaceId, { extraLinks: [{ index: 9, url: 'javascript:alert(document.cookie)' }] });
    other = await seedCampaign(ctx.owner.workspaceId, { urls: ['https://other.example.com/a', 'https://other.example.com/b', 'https://other.example.com/c', 'https://other.example.com/d', 'https://other.example.com/e'] });
  });

  it('redirects a valid click with 302, no-store and noindex', async () => {
    const res = await hit(pathOf(urls().click(seeded.sends[0]!.id, 1)));
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(seeded.urls[1]);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-robots-tag')).toBe('noindex');
    // A second click is served from the cache, the same way.
    expect((await hit(pathOf(urls().click(seeded.sends[0]!.id, 0)))).headers.get('location')).toBe(seeded.urls[0]);
  });

  it('HEAD on a click still redirects (and is recorded as a machine)', async () => {
    const res = await hit(pathOf(urls().click(seeded.sends[0]!.id, 2)), { method: 'HEAD' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(seeded.urls[2]);
  });

  it('a prefetch says so (Sec-Purpose, Purpose, X-Purpose, X-Moz): answered as any hit, recorded as a machine (prefetch), never a read or a click', async () => {
    const fresh = await seedCampaign(ctx.owner.workspaceId, { sends: 5 });
    const prefetches: Record<string, string>[] = [{ 'sec-purpose': 'prefetch;prerender' }, { purpose: 'prefetch' }, { 'x-purpose': 'preview' }, { 'x-moz': 'prefetch' }];
    for (const [i, headers] of prefetches.entries()) {
      expect((await hit(pathOf(urls().click(fresh.sends[i]!.id, 0)), { headers })).status).toBe(302);
      expectPixel(await hit(pathOf(urls().openPixel(fresh.sends[i]!.id)), { headers }));
    }
    // The fifth person, in the same browser without a purpose header: a person.
    await hit(pathOf(urls().click(fresh.sends[4]!.id, 0)));
    await tracking().flush();
    const events = await eventsOf(fresh.campaignId);
    expect(events).toHaveLength(9);
    for (const event of events) {
      if (event.send_id === fresh.sends[4]!.id) expect([event.classification, event.reasons]).toEqual(['human', ['no_machine_signal']]);
      else expect([event.type, event.classification, event.reasons]).toEqual([event.type, 'machine', ['prefetch']]);
    }
  });

  it('open-redirect attempts of every shape: 404 or the stored URL, never anywhere else', async () => {
    const send = seeded.sends[0]!.id;
    const token = pathOf(urls().click(send, 0)).slice('/t/c/'.length);
    const tampered = Buffer.from(token, 'base64url');
    tampered[3]! ^= 0x01;
    const codec = tracking().codec;
    const forged = createTokenCodec([{ version: 'v1', secret: 'an-attackers-secret-that-is-long-enough' }]).encode({ kind: 'click', sendId: send, linkIndex: 0 });
    const attempts = [
      // Tokens that name no stored link.
      `/t/c/${codec.encode({ kind: 'click', sendId: send, linkIndex: 7 })}`,
      `/t/c/${codec.encode({ kind: 'click', sendId: send, linkIndex: 4 })}`, // exists in the other campaign only
      `/t/c/${codec.encode({ kind: 'click', sendId: send, linkIndex: 9 })}`, // stored, but javascript:
      `/t/c/${codec.encode({ kind: 'click', sendId: randomUUID(), linkIndex: 0 })}`,
      `/t/c/${tampered.toString('base64url')}`,
      `/t/c/${forged}`,
      `/t/c/${codec.encode({ kind: 'open', sendId: send })}`,
      `/t/c/${codec.encode({ kind: 'unsubscribe', recipientId: seeded.sends[0]!.recipientId })}`,
      // URLs in parameters are never read.
      `/t/c/?url=https://evil.example/`,
      `/t/c/?redirect=https%3A%2F%2Fevil.example%2F`,
      // Encoded and path tricks around a valid token.
      '/t/c/%2F%2Fevil.example',
      '/t/c//evil.example',
      '/t/c/https:%2F%2Fevil.example',
      `/t/c/${token}%2F%2Fevil.example`,
      `/t/c/${token}/https://evil.example/`,
      `/t/c/${token}/..%2F..%2Fevil.example`,
      `/t/c/${token}\\evil.example`,
      `/t/c/${token}\\\\evil.example`,
      `/t/c/\\\\evil.example`,
      `/t/c/${token}@evil.example`,
      `/t/c/${token}.gif`,
      `/t/c/${token}%00`,
      `/t/c/${token}%0d%0aLocation:%20https://evil.example/`,
      '/t/c/',
      '/t/x/whatever',
    ];
    for (const path of attempts) {
      const res = await rawGet(path);
      expect(res.status, path).toBe(404);
      expect(res.location, path).toBeUndefined();
      expect(res.body, path).toContain('Link not found');
    }
    const withParams = [`/t/c/${token}?url=https://evil.example/`, `/t/c/${token}?redirect=https://evil.example/&next=//evil.example`, `/t/c/${token}?`];
    for (const path of withParams) {
      const res = await rawGet(path);
      expect(res.status, path).toBe(302);
      expect(res.location, path).toBe(seeded.urls[0]);
    }
    // A valid token of another campaign's send goes to that campaign's own link, not this one's.
    const foreignSend = await rawGet(pathOf(urls().click(other.sends[0]!.id, 4)));
    expect(foreignSend).toMatchObject({ status: 302, location: 'https://other.example.com/e' });
  });
});
