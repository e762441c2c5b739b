import { describe, expect, it } from 'vitest';
import { useAppWithOwner } from '../helpers/test-app.js';
import { APPLE_IP, HOME_IP, pathOf, trackingHits, UA } from '../helpers/tracking-hits.js';

/*
 * A HEAD or a hit on the hidden honeypot link is a machine, and so is every other click of the
 * same send from the same address and agent within 10 s of it, before or after: a link scanner
 * that follows every href (the honeypot included) or checks a link with HEAD before its GET is
 * one machine, not one machine and a person. Found by an attacker: only the hit carrying the
 * evidence was marked, so the scanner's other clicks counted human and upgraded a machine open.
 */

const ctx = useAppWithOwner();
const { tracking, urls, seedCampaign, hit, eventsOf } = trackingHits(ctx);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const statsOf = async (campaignId: string) => (await ctx.app.api('GET', `/api/campaigns/${campaignId}/stats`, { token: ctx.owner.token })).body;

// A Safe Links / Defender detonation: a browser agent from Microsoft's network, no scanner name.
const SCANNER_IP = '40.94.32.5';
const MPP_UA = 'Mozilla/5.0';

describe('machine evidence (HEAD, honeypot) marks the same client\'s other clicks of the send', () => {
  it('a one-link mail: the scanner clicks the button, then the hidden link 100 ms later — both are machine clicks', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { urls: ['https://shop.example.com/spring-sale'], sentAgoMs: 90_000 });
    const send = seeded.sends[0]!.id;
    await hit(pathOf(urls().click(send, 0)), { ua: UA.chrome, ip: SCANNER_IP });
    await sleep(100);
    await hit(pathOf(urls().click(send, seeded.honeypotIndex)), { ua: UA.chrome, ip: SCANNER_IP });
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    expect(events.find((e) => e.link_index === seeded.honeypotIndex)).toMatchObject({ classification: 'machine', reasons: ['honeypot'] });
    expect(events.find((e) => e.link_index === 0), 'the same scanner\'s click on the button').toMatchObject({ classification: 'machine', reasons: ['same_client_as_machine'] });
    expect((await statsOf(seeded.campaignId)).clicks).toMatchObject({ human: 0, machine: 2, uniqueHuman: 0 });
  });

  it('a scanner that walks the links 1.2 s apart, then the honeypot: no human click, and the MPP open stays a machine open', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { sentAgoMs: 90_000 });
    const send = seeded.sends[0]!.id;
    await hit(pathOf(urls().openPixel(send)), { ua: MPP_UA, ip: APPLE_IP });
    for (const index of [0, 1, 2, seeded.honeypotIndex]) {
      await hit(pathOf(urls().click(send, index)), { ua: UA.chrome, ip: SCANNER_IP });
      await sleep(1_200);
    }
    // The first click was answered 3.6 s before the honeypot hit: it must still be held then.
    await tracking().flush();
    const stats = await statsOf(seeded.campaignId);
    expect(stats.clicks).toMatchObject({ human: 0, machine: 4, uniqueHuman: 0 });
    expect(stats.opens).toMatchObject({ human: 0, machine: 1, uniqueHuman: 0 });
  });

  it('a link checker that sends HEAD, then GET of the same link 50 ms later: the GET is a machine click', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { urls: ['https://shop.example.com/spring-sale'], sentAgoMs: 90_000 });
    const send = seeded.sends[0]!.id;
    await hit(pathOf(urls().click(send, 0)), { method: 'HEAD', ua: UA.chrome, ip: SCANNER_IP });
    await sleep(50);
    await hit(pathOf(urls().click(send, 0)), { ua: UA.chrome, ip: SCANNER_IP });
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    expect(events.map((e) => [e.method, e.classification, e.reasons])).toEqual([
      ['HEAD', 'machine', ['head_request']],
      ['GET', 'machine', ['same_client_as_machine']],
    ]);
  });

  it('another client\'s click on the same send, in the same moment, is still a person', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { urls: ['https://shop.example.com/spring-sale'], sentAgoMs: 90_000 });
    const send = seeded.sends[0]!.id;
    await hit(pathOf(urls().click(send, seeded.honeypotIndex)), { ua: UA.chrome, ip: SCANNER_IP });
    await hit(pathOf(urls().click(send, 0)), { ua: UA.chrome, ip: HOME_IP });
    await hit(pathOf(urls().click(send, 0)), { ua: UA.thunderbird, ip: SCANNER_IP });
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    expect(events.filter((e) => e.link_index === 0).map((e) => [e.ip, e.classification])).toEqual([
      [HOME_IP, 'human'],
      [SCANNER_IP, 'human'],
    ]);
  });
});
