import type { CampaignRow } from './campaigns.repo.js';

/** A campaign as the API answers it: its own fields, none of the ledger's. */
export function presentCampaign(campaign: CampaignRow) {
  return {
    id: campaign.id,
    name: campaign.name,
    kind: campaign.kind,
    status: campaign.status,
    statusReason: campaign.statusReason,
    mailboxId: campaign.mailboxId,
    subject: campaign.subject,
    html: campaign.html,
    text: campaign.text,
    topic: campaign.topic,
    audience: campaign.audience,
    steps: campaign.steps,
    startAt: campaign.startAt,
    sendingWindow: campaign.sendingWindow,
    launchedAt: campaign.launchedAt,
    completedAt: campaign.completedAt,
    createdAt: campaign.createdAt,
  };
}
