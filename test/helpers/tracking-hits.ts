import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { campaignLinks, campaignSends, campaigns, contacts, recipients } from '../../src/db/schema.js';
import { PIXEL_GIF } from '../../src/tracking/tracking-handler.js';
import type { TestApp } from './test-app.js';

/*
 * What the tracking tests (tracking-pixel-click, tracking-recording, tracking-stats) share:
 * user agents and addresses of the kinds the classifier tells apart, a seeded campaign,
 * hits on the tracking URLs over the app's socket, and the events they recorded.
 */

export const UA = {
  chrome: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  thunderbird: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0',
  appleMail: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
  gmailProxy: 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)',
  barracuda: 'Barracuda Sentinel (EE)',
};
/** In the shipped sample of Apple's egress list (src/tracking/data). */
export const APPLE_IP = '172.224.226.7';
export const HOME_IP = '203.0.113.9';

export interface Seeded {
  campaignId: string;
  sends: { id: string; recipientId: string; email: string; contactId: string }[];
  urls: string[];
  honeypotIndex: number;
}

export const pathOf = (url: string) => new URL(url).pathname;

let seq = 0;

/** Helpers over the file's app (read `ctx` inside tests or hooks, as useAppWithOwner's). */
export function trackingHits(ctx: { app: TestApp }) {
  const db = () => ctx.app.database.db;
  const tracking = () => ctx.app.services.tracking;
  const urls = () => tracking().urls;

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

  async function hit(path: string, options: { method?: string; ua?: string | null; ip?: string; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.ua !== null) headers['user-agent'] = options.ua ?? UA.chrome;
    // The test client is on loopback, which TRUST_PROXY trusts: X-Forwarded-For names the client.
    if (options.ip) headers['x-forwarded-for'] = options.ip;
    const response = await fetch(`${ctx.app.baseUrl}${path}`, { method: options.method ?? 'GET', headers, redirect: 'manual' });
    return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
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

  return { db, tracking, urls, seedCampaign, hit, eventsOf, expectPixel };
}
