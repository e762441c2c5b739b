import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { campaignSends, recipients } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { HOME_IP, pathOf, trackingHits, UA } from '../helpers/tracking-hits.js';

/*
 * Issue 5, tracking half, what a hit leaves behind: events written in batches with a
 * classification, none for a send that is gone, none lost while the database is down, and
 * (P-14) raw IP and user agent truncated after the retention window.
 */

const ctx = useAppWithOwner();
const { db, tracking, urls, seedCampaign, hit, eventsOf, expectPixel } = trackingHits(ctx);

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

  it('in a sequence, a scanner following every link of one mail at once is a machine: the rule counts that step\'s links, not the sequence\'s', async () => {
    // Two links a mail, four in the sequence: the threshold was min(4, 3) = 3, never met by one mail (an attacker's finding).
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'sequence@acme.test');
    const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'buyer@contoso.test' } });
    const step0 = '<p><a href="https://shop.example.com/spring">Shop</a> <a href="https://shop.example.com/lookbook">Lookbook</a></p>';
    const step1 = '<p><a href="https://shop.example.com/spring">Shop</a> <a href="https://shop.example.com/faq">FAQ</a></p>';
    const created = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'Sequence', kind: 'marketing', mailboxId: mailbox.id, subject: 'Spring', html: step0, contactIds: [contact.body.id], steps: [{ afterDays: 3, html: step1 }] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const campaignId = created.body.id as string;
    const links = rowsOf<{ link_index: number; url: string; steps: number[] | null }>(await db().execute(sql`select link_index, url, steps from campaign_links where campaign_id = ${campaignId} and not honeypot`));
    expect(links.map((l) => [l.url.split('/').pop(), l.steps])).toEqual([['spring', [0, 1]], ['lookbook', [0]], ['faq', [1]]]);
    const indexOf = (path: string) => links.find((l) => l.url.endsWith(path))!.link_index;
    const [recipient] = await db().insert(recipients).values({ workspaceId: ctx.owner.workspaceId, email: 'buyer@contoso.test' }).returning({ id: recipients.id });
    const sendOf = async (step: number) => {
      const [row] = await db()
        .insert(campaignSends)
        .values({ workspaceId: ctx.owner.workspaceId, campaignId, step, contactId: contact.body.id, recipientId: recipient!.id, email: 'buyer@contoso.test', status: 'sent', rfc822MessageId: `${randomUUID()}@inboxtrail.test`, sentAt: new Date(Date.now() - 120_000) })
        .returning({ id: campaignSends.id });
      return row!.id;
    };
    const [first, followUp] = [await sendOf(0), await sendOf(1)];

    // The scanner follows both links of each mail within the same moment.
    await Promise.all(['/spring', '/lookbook'].map((path) => hit(pathOf(urls().click(first, indexOf(path))), { ua: UA.chrome, ip: '40.107.22.50' })));
    await Promise.all(['/spring', '/faq'].map((path) => hit(pathOf(urls().click(followUp, indexOf(path))), { ua: UA.chrome, ip: '40.107.22.50' })));
    await tracking().flush();
    const events = await eventsOf(campaignId);
    expect(events.map((e) => [e.send_id === first ? 0 : 1, e.classification, e.reasons.includes('all_links_at_once')]).sort()).toEqual([
      [0, 'machine', true],
      [0, 'machine', true],
      [1, 'machine', true],
      [1, 'machine', true],
    ]);
    const stats = (await ctx.app.api('GET', `/api/campaigns/${campaignId}/stats`, { token: ctx.owner.token })).body;
    expect(stats.clicks).toMatchObject({ human: 0, uniqueHuman: 0, machine: 4 });
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
