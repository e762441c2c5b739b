import { randomUUID } from 'node:crypto';
import type { AuthContext } from '../../src/auth/auth.service.js';
import type { CampaignsService } from '../../src/campaigns/campaigns.service.js';
import type { Db } from '../../src/db/connect.js';
import { campaignLinks, campaignSends, campaigns, recipients } from '../../src/db/schema.js';

/**
 * A campaign with `links` content links plus a honeypot (the last index), and one sent
 * send per recipient and step, inserted directly (the campaign API is not what such
 * tests are about).
 */
export async function seedSentCampaign(db: Db, workspaceId: string, options: { recipients: number; steps?: number; links?: number }) {
  const links = options.links ?? 3;
  const [campaign] = await db
    .insert(campaigns)
    .values({ workspaceId, name: `Seeded ${randomUUID()}`, kind: 'marketing', subject: 'Hi', html: '<p>x</p>', audience: { contactIds: [] }, status: 'sending' })
    .returning({ id: campaigns.id });
  const campaignId = campaign!.id;
  const urls = Array.from({ length: links }, (_, i) => `https://shop.example.com/${i}`);
  await db.insert(campaignLinks).values([...urls.map((url, linkIndex) => ({ workspaceId, campaignId, linkIndex, url })), { workspaceId, campaignId, linkIndex: links, url: 'http://127.0.0.1:1/', honeypot: true }]);
  const sends: { id: string; recipientId: string }[] = [];
  for (let r = 0; r < options.recipients; r += 1) {
    const email = `seeded-${randomUUID()}@contoso.test`;
    const [recipient] = await db.insert(recipients).values({ workspaceId, email }).returning({ id: recipients.id });
    // Several steps of a sequence: one recipient, several sends.
    for (let step = 0; step < (options.steps ?? 1); step += 1) {
      const [send] = await db
        .insert(campaignSends)
        .values({ workspaceId, campaignId, step, recipientId: recipient!.id, email, status: 'sent', rfc822MessageId: `${randomUUID()}@t`, sentAt: new Date(Date.now() - 86_400_000) })
        .returning({ id: campaignSends.id });
      sends.push({ id: send!.id, recipientId: recipient!.id });
    }
  }
  return { campaignId, sends, links, urls };
}

/**
 * A transactional receipt to these contacts, created through the service and scheduled for
 * tomorrow: launched, its sends stay queued (for tests of what launch writes, not of sending).
 */
export function scheduledReceipt(campaigns: CampaignsService, auth: AuthContext, options: { name: string; mailboxId: string; contactIds: string[] }) {
  return campaigns.create(auth, {
    name: options.name,
    kind: 'transactional',
    mailboxId: options.mailboxId,
    subject: 'Receipt',
    text: 'Thanks',
    audience: { contactIds: options.contactIds },
    steps: [],
    startAt: new Date(Date.now() + 86_400_000),
  });
}
