import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { campaignLinks, campaignSends, campaigns, contacts, mailEvents, messages, recipients, suppressions } from '../../src/db/schema.js';
import { PIXEL_GIF } from '../../src/tracking/tracking-handler.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * Issue 5, tracking half: the pixel always answers, a click goes only where the campaign
 * says, hits are recorded in batches with a classification, and stats are right.
 */

const ctx = useAppWithOwner();
const db = () => ctx.app.database.db;
const tracking = () => ctx.app.services.tracking;

const UA = {
  chrome: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  thunderbird: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0',
  appleMail: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
  gmailProxy: 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)',
  barracuda: 'Barracuda Sentinel (EE)',
};
/** In the shipped sample of Apple's egress list (src/tracking/data). */
const APPLE_IP = '172.224.226.7';
const HOME_IP = '203.0.113.9';

let seq = 0;
interface Seeded {
  campaignId: string;
  sends: { id: string; recipientId: string; email: string; contactId: string }[];
  urls: string[];
  honeypotIndex: number;
}

/** A campaign with links (+ a honeypot) and sent sends, inserted directly (the campaign API is not what is tested here). */
async function seedCampaign(workspaceId: string, options: { urls?: string[]; sends?: number; sentAgoMs?: number; extraLinks?: { index: number; url: string }[] } = {}): Promise<Seeded> {
  seq += 1;
  const urls = options.urls ?? ['https://shop.example.com/spring?utm_source=mail', 'https://shop.example.com/blog/post-1', 'https://docs.example.org/guide'];
  const [campaign] = await db()
    .insert(campaigns)
    .values({ workspaceId, name: `Tracking ${seq}`, kind: 'marketing', subject: 'Hello', html: '<p>x</p>', audience: { contactIds: [] }, status: 'sending' })
    .returning({ id: campaigns.id });
  const campaignId = campaign!.id;
  const honeypotIndex = urls.length;
  await db()
    .insert(campaignLinks)
    .values([
      ...urls.map((url, linkIndex) => ({ workspaceId, campaignId, linkIndex, url })),
      { workspaceId, campaignId, linkIndex: honeypotIndex, url: 'http://127.0.0.1:1/', honeypot: true },
      ...(options.extraLinks ?? []).map((l) => ({ workspaceId, campaignId, linkIndex: l.index, url: l.url })),
    ]);
  const sends: Seeded['sends'] = [];
  for (let i = 0; i < (options.sends ?? 1); i += 1) {
    const email = `r${seq}-${i}@contoso.test`;
    const [contact] = await db().insert(contacts).values({ workspaceId, email }).returning({ id: contacts.id });
    const [recipient] = await db().insert(recipients).values({ workspaceId, email }).returning({ id: recipients.id });
    const [send] = await db()
      .insert(campaignSends)
      .values({
        workspaceId,
        campaignId,
        step: 0,
        contactId: contact!.id,
        recipientId: recipient!.id,
        email,
        status: 'sent',
        rfc822MessageId: `${randomUUID()}@inboxtrail.test`,
        sentAt: new Date(Date.now() - (options.sentAgoMs ?? 2 * 3600_000)),
      })
      .returning({ id: campaignSends.id });
    sends.push({ id: send!.id, recipientId: recipient!.id, email, contactId: contact!.id });
  }
  return { campaignId, sends, urls, honeypotIndex };
}

const urls = () => tracking().urls;
const pathOf = (url: string) => new URL(url).pathname;

async function hit(path: string, options: { method?: string; ua?: string | null; ip?: string } = {}) {
  const headers: Record<string, string> = {};
  if (options.ua !== null) headers['user-agent'] = options.ua ?? UA.chrome;
  // The test client is on loopback, which TRUST_PROXY trusts: X-Forwarded-For names the client.
  if (options.ip) headers['x-forwarded-for'] = options.ip;
  const response = await fetch(`${ctx.app.baseUrl}${path}`, { method: options.method ?? 'GET', headers, redirect: 'manual' });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

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

async function eventsOf(campaignId: string) {
  const result = (await db().execute(
    sql`select send_id, type::text as type, link_index, method, ip, user_agent, classification::text as classification, reasons from tracking_events where campaign_id = ${campaignId} order by at, type desc, method desc`,
  )) as unknown as { rows: { send_id: string; type: string; link_index: number | null; method: string; ip: string | null; user_agent: string | null; classification: string; reasons: string[] }[] };
  return result.rows;
}

const expectPixel = (res: Awaited<ReturnType<typeof hit>>, method = 'GET') => {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/gif');
  expect(res.headers.get('cache-control')).toBe('no-store, private');
  expect(res.headers.get('content-length')).toBe('43');
  if (method === 'GET') {
    expect(res.body.length).toBe(43);
    expect(res.body.equals(PIXEL_GIF)).toBe(true);
    expect(res.body.subarray(0, 6).toString('latin1')).toBe('GIF89a');
  } else {
    expect(res.body.length).toBe(0);
  }
};

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

describe('recording and classification', () => {
  it('a scanner that follows every link at once is a machine on every click; the honeypot too', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId);
    const send = seeded.sends[0]!.id;
    await Promise.all([0, 1, 2].map((i) => hit(pathOf(urls().click(send, i)), { ua: UA.chrome })));
    await hit(pathOf(urls().click(send, seeded.honeypotIndex)), { ua: UA.chrome });
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    expect(events.map((e) => [e.link_index, e.classification, e.reasons.includes(e.link_index === 3 ? 'honeypot' : 'all_links_at_once')]).sort()).toEqual([
      [0, 'machine', true],
      [1, 'machine', true],
      [2, 'machine', true],
      [3, 'machine', true],
    ]);
  });

  it('a hit on a send deleted after its token was cached leaves no event (a purged send stays gone)', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { sends: 2 });
    const send = seeded.sends[0]!.id;
    const other = seeded.sends[1]!.id;
    expectPixel(await hit(pathOf(urls().openPixel(send))));
    await tracking().flush();
    expect((await eventsOf(seeded.campaignId)).filter((e) => e.send_id === send)).toHaveLength(1);
    // The purge deletes the send's events and then the send; the cache still knows the send.
    await db().execute(sql`delete from tracking_events where send_id = ${send}`);
    await db().execute(sql`delete from tracking_send_rollups where send_id = ${send}`);
    await db().delete(campaignSends).where(sql`${campaignSends.id} = ${send}`);
    expectPixel(await hit(pathOf(urls().openPixel(send)), { ip: '198.51.100.23' }));
    expectPixel(await hit(pathOf(urls().openPixel(other))));
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    expect(events.filter((e) => e.send_id === send)).toEqual([]);
    expect(events.filter((e) => e.send_id === other)).toHaveLength(1);
  });

  it('the pixel answers while the database is down, and the event lands once it is back', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId);
    await tracking().flush();
    await db().execute(sql`alter table tracking_events rename to tracking_events_away`);
    try {
      const started = performance.now();
      expectPixel(await hit(pathOf(urls().openPixel(seeded.sends[0]!.id)), { ua: UA.thunderbird, ip: HOME_IP }));
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(await tracking().flush()).toBe(1); // not written, kept
      expect(tracking().pending()).toBe(1);
    } finally {
      await db().execute(sql`alter table tracking_events_away rename to tracking_events`);
    }
    expect(await tracking().flush()).toBe(0);
    const events = await eventsOf(seeded.campaignId);
    expect(events).toMatchObject([{ type: 'open', classification: 'human', ip: HOME_IP, user_agent: UA.thunderbird }]);
    const metrics = await ctx.app.api('GET', '/metrics');
    expect(metrics.text).toMatch(/tracking_event_write_failures_total [1-9]/);
    expect(metrics.text).toMatch(/tracking_events_dropped_total\{reason="buffer_full"\} 0|tracking_events_dropped_total 0|# TYPE tracking_events_dropped_total counter/);
    expect(metrics.text).toMatch(/http_requests_total\{method="GET",route="\/t\/o\/:token",status="200"\} \d+/);
    expect(metrics.text).toMatch(/http_requests_total\{method="GET",route="\/t\/c\/:token",status="302"\} \d+/);
    expect(metrics.text).toContain('tracking_events_buffered 0');
  });

  it('Express still serves everything that is not /t/', async () => {
    expect((await ctx.app.api('GET', '/healthz')).status).toBe(200);
    expect((await ctx.app.api('GET', '/tracking')).status).toBe(404);
    expect((await ctx.app.api('GET', '/api/me', { token: ctx.owner.token })).status).toBe(200);
  });
});

describe('GET /api/campaigns/:id/stats (P-07)', () => {
  let seeded: Seeded;
  beforeAll(async () => {
    seeded = await seedCampaign(ctx.owner.workspaceId, { sends: 7 });
    const [r1, r2, r3, r4, r5, r6] = seeded.sends;
    const open = (send: { id: string }) => pathOf(urls().openPixel(send.id));
    const click = (send: { id: string }, index: number) => pathOf(urls().click(send.id, index));

    // r1: Apple Mail Privacy Protection prefetch (machine)… then the person clicks in a browser: the open becomes human.
    await hit(open(r1!), { ua: UA.appleMail, ip: APPLE_IP });
    await hit(click(r1!, 0), { ua: UA.chrome, ip: HOME_IP });
    // r2: Gmail's image proxy (unknown), who also replied.
    await hit(open(r2!), { ua: UA.gmailProxy, ip: '66.249.84.10' });
    // r3: a person in Thunderbird, twice (two human opens, one unique).
    await hit(open(r3!), { ua: UA.thunderbird, ip: HOME_IP });
    await hit(open(r3!), { ua: UA.thunderbird, ip: HOME_IP });
    // r4: a link scanner that says who it is (machine click), and the message bounced.
    await hit(click(r4!, 1), { ua: UA.barracuda });
    // r5: a HEAD on the pixel (machine), then unsubscribed from this campaign.
    await hit(open(r5!), { method: 'HEAD', ua: UA.chrome });
    // r6: the honeypot, from a browser agent (machine), not listed among links.
    await hit(click(r6!, seeded.honeypotIndex), { ua: UA.chrome });
    // r7: never opened; its send failed.
    await db().update(campaignSends).set({ status: 'failed', sentAt: null }).where(sql`${campaignSends.id} = ${seeded.sends[6]!.id}`);

    // Replies and bounces arrive through mail sync: mail_events on the sends' messages.
    for (const [send, type] of [
      [r2!, 'reply'],
      [r4!, 'bounce'],
    ] as const) {
      const [message] = await db()
        .insert(messages)
        .values({ workspaceId: ctx.owner.workspaceId, direction: 'outbound', status: 'sent', fromAddress: 'sender@acme.test', toAddresses: [send.email] })
        .returning({ id: messages.id });
      await db().update(campaignSends).set({ messageId: message!.id }).where(sql`${campaignSends.id} = ${send.id}`);
      await db().insert(mailEvents).values({ workspaceId: ctx.owner.workspaceId, messageId: message!.id, type, sourceGmailMessageId: `g-${send.id}` });
    }
    await db()
      .insert(suppressions)
      .values([
        { workspaceId: ctx.owner.workspaceId, email: r5!.email, reason: 'unsubscribe', source: `campaign:${seeded.campaignId}` },
        { workspaceId: ctx.owner.workspaceId, email: r6!.email, reason: 'manual', source: `campaign:${seeded.campaignId}` },
        { workspaceId: ctx.owner.workspaceId, email: r3!.email, reason: 'unsubscribe', source: `campaign:${randomUUID()}` },
      ]);
    await tracking().flush();
  });

  it('P-07 counts a scripted mix of human and machine events exactly, human first, unique per recipient', async () => {
    const res = await ctx.app.api('GET', `/api/campaigns/${seeded.campaignId}/stats`, { token: ctx.owner.token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      campaignId: seeded.campaignId,
      sent: 6,
      failed: 1,
      bounced: 1,
      // A bounce event without a kind (written before bounces had classes) counts as soft.
      bounces: { hard: 0, soft: 1, delayed: 0 },
      replied: 1,
      autoReplied: 0,
      unsubscribed: 1,
      opens: { human: 3, machine: 1, unknown: 1, uniqueHuman: 2 },
      clicks: { human: 1, machine: 2, unknown: 0, uniqueHuman: 1 },
      links: [
        { index: 0, url: seeded.urls[0], clicks: { human: 1, machine: 0, unknown: 0, uniqueHuman: 1 } },
        { index: 1, url: seeded.urls[1], clicks: { human: 0, machine: 1, unknown: 0, uniqueHuman: 0 } },
        { index: 2, url: seeded.urls[2], clicks: { human: 0, machine: 0, unknown: 0, uniqueHuman: 0 } },
      ],
    });
  });

  it('keeps each stored verdict as it arrived (the upgrade is a reading, not a rewrite)', async () => {
    const events = await eventsOf(seeded.campaignId);
    const r1 = events.filter((e) => e.send_id === seeded.sends[0]!.id);
    expect(r1.map((e) => [e.type, e.classification, e.reasons])).toEqual([
      ['open', 'machine', ['apple_mpp_ip']],
      ['click', 'human', ['no_machine_signal']],
    ]);
  });

  it("shows the contact's campaign mail with human numbers and reasons, including the upgrade", async () => {
    const timeline = await tracking().stats.contactTimeline(ctx.owner.workspaceId, seeded.sends[0]!.contactId);
    expect(timeline).toHaveLength(1);
    expect(timeline[0]).toMatchObject({
      type: 'campaign_mail',
      campaignId: seeded.campaignId,
      opens: { human: 1, machine: 0, unknown: 0, uniqueHuman: 1 },
      clicks: { human: 1, machine: 0, unknown: 0, uniqueHuman: 1 },
      events: [
        { type: 'open', classification: 'human', reasons: ['apple_mpp_ip', 'upgraded_by_human_click'] },
        { type: 'click', classification: 'human', linkIndex: 0, url: seeded.urls[0] },
      ],
    });
    expect(JSON.stringify(timeline)).not.toContain(HOME_IP);
    // Another workspace asking about this contact sees nothing.
    expect(await tracking().stats.contactTimeline(randomUUID(), seeded.sends[0]!.contactId)).toEqual([]);
  });

  it("another workspace's campaign, a missing one and a malformed id are all 404; no token is 401", async () => {
    const stranger = await signUp(ctx.app);
    for (const [id, token] of [
      [seeded.campaignId, stranger.token],
      [randomUUID(), ctx.owner.token],
      ['not-a-uuid', ctx.owner.token],
    ] as const) {
      const res = await ctx.app.api('GET', `/api/campaigns/${id}/stats`, { token });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
      expect(res.text).not.toContain('shop.example.com');
    }
    expect((await ctx.app.api('GET', `/api/campaigns/${seeded.campaignId}/stats`)).status).toBe(401);
  });
});

describe('P-14 raw IP and user agent are truncated after the retention window', () => {
  it('moves the clock: old events lose the user agent and keep a /24 or /48 network; recent ones and the verdicts stay', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { sends: 2 });
    await hit(pathOf(urls().openPixel(seeded.sends[0]!.id)), { ua: UA.thunderbird, ip: '198.51.100.77' });
    await hit(pathOf(urls().openPixel(seeded.sends[1]!.id)), { ua: UA.thunderbird, ip: '2001:db8:abcd:12::5' });
    await tracking().flush();
    const days = ctx.app.config.tracking.rawRetentionDays;
    expect(days).toBe(30);

    // 29 days later: nothing is due.
    const snapshot = async () => (await eventsOf(seeded.campaignId)).map((e) => JSON.stringify(e)).sort();
    const before = await snapshot();
    await tracking().truncateRawFacts(new Date(Date.now() + 29 * 86_400_000));
    expect(await snapshot()).toEqual(before);

    // 31 days later: both are truncated (the count includes older tests' events, all past the window by then).
    const changed = await tracking().truncateRawFacts(new Date(Date.now() + 31 * 86_400_000));
    expect(changed).toBeGreaterThanOrEqual(2);
    const after = await eventsOf(seeded.campaignId);
    expect(after.map((e) => [e.ip, e.user_agent, e.classification, e.reasons]).sort()).toEqual([
      ['198.51.100.0/24', null, 'human', ['no_machine_signal']],
      ['2001:db8:abcd::/48', null, 'human', ['no_machine_signal']],
    ]);
    // Running again changes nothing.
    expect(await tracking().truncateRawFacts(new Date(Date.now() + 31 * 86_400_000))).toBe(0);
  });
});
