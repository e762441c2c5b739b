import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { campaignSends, mailEvents, messages, suppressions } from '../../src/db/schema.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';
import { APPLE_IP, HOME_IP, pathOf, trackingHits, UA, type Seeded } from '../helpers/tracking-hits.js';

/*
 * Issue 5, tracking half, the numbers (P-07): a campaign's stats from a scripted mix of human
 * and machine hits, replies, bounces and opt-outs, and the contact's timeline, for its own
 * workspace only.
 */

const ctx = useAppWithOwner();
const { db, tracking, urls, seedCampaign, hit, eventsOf } = trackingHits(ctx);

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
