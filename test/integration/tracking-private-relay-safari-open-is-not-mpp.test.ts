import { describe, expect, it } from 'vitest';
import { useAppWithOwner } from '../helpers/test-app.js';
import { APPLE_IP, pathOf, trackingHits, UA } from '../helpers/tracking-hits.js';

/*
 * Apple's egress ranges carry Mail Privacy Protection's prefetches AND iCloud Private Relay
 * browsing (apple-mpp.ts). Safari (its agent says `Version/… Safari/…`, which Mail's WebKit
 * view does not) loading the pixel through Private Relay — on by default for iCloud+ users —
 * is a person reading, and must not be stored as an MPP machine open. Found by an attacker:
 * every open from the ranges was `apple_mpp_ip`, whatever the agent.
 */

const ctx = useAppWithOwner();
const { tracking, urls, seedCampaign, hit, eventsOf } = trackingHits(ctx);
const SAFARI_IOS = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';

describe('an open by Safari through iCloud Private Relay is judged by its agent, not as Mail Privacy Protection', () => {
  it('iPhone Safari from an Apple egress address an hour after the send is a human open; Apple Mail from the same address stays MPP', async () => {
    const seeded = await seedCampaign(ctx.owner.workspaceId, { sends: 2, sentAgoMs: 3600_000 });
    await hit(pathOf(urls().openPixel(seeded.sends[0]!.id)), { ua: SAFARI_IOS, ip: APPLE_IP });
    await hit(pathOf(urls().openPixel(seeded.sends[1]!.id)), { ua: UA.appleMail, ip: APPLE_IP });
    await tracking().flush();
    const events = await eventsOf(seeded.campaignId);
    const bySend = (id: string) => events.find((e) => e.send_id === id)!;
    expect(bySend(seeded.sends[0]!.id)).toMatchObject({ type: 'open', classification: 'human', reasons: ['no_machine_signal'] });
    expect(bySend(seeded.sends[1]!.id)).toMatchObject({ type: 'open', classification: 'machine', reasons: ['apple_mpp_ip'] });
  });
});
