import type { CampaignAudience, CampaignStep, SendingWindow } from '../db/schema.js';
import { extractLinks } from '../tracking/rewrite.js';

/*
 * What a sender writes of a campaign (create, edit), and what the service derives from it
 * before storing: its columns and its tracked links. Pure: the checks that read the workspace
 * (its mailboxes, contacts, merge fields) are the service's (campaigns.service.ts validate).
 */

export interface CampaignInput {
  name: string;
  kind: 'marketing' | 'transactional';
  mailboxId: string;
  subject: string;
  html?: string;
  text?: string;
  topic?: string;
  audience: CampaignAudience;
  steps: CampaignStep[];
  startAt?: Date;
  sendingWindow?: SendingWindow;
}

export interface PreviewContent {
  kind: CampaignInput['kind'];
  subject: string;
  html?: string;
  text?: string;
}

/** Distinct links a campaign may hold across its steps (each is tracked: a row of campaign_links). */
export const MAX_TRACKED_LINKS = 1_000;

/**
 * The numbered links of every body, each with the steps whose mail holds it (the burst rule
 * counts one mail's links: tracking/classify.ts), plus the honeypot under `publicBaseUrl`
 * (machines follow it, people never see it; in every mail).
 */
export function campaignLinksOf(input: CampaignInput, publicBaseUrl: string) {
  const stepsByUrl = new Map<string, number[]>();
  [input.html, ...input.steps.map((s) => s.html)].forEach((html, step) => {
    for (const url of html ? extractLinks(html) : []) stepsByUrl.set(url, [...(stepsByUrl.get(url) ?? []), step]);
  });
  const links: { url: string; honeypot: boolean; steps: number[] | null }[] = [...stepsByUrl].map(([url, steps]) => ({ url, honeypot: false, steps }));
  return [...links, { url: `${publicBaseUrl}/`, honeypot: true, steps: null }];
}

/** The campaign's columns as the input gives them (absent optional fields stored as null). */
export function campaignFields(input: CampaignInput) {
  return {
    name: input.name,
    kind: input.kind,
    mailboxId: input.mailboxId,
    subject: input.subject,
    html: input.html ?? null,
    text: input.text ?? null,
    topic: input.topic ?? null,
    audience: input.audience,
    steps: input.steps,
    startAt: input.startAt ?? null,
    sendingWindow: input.sendingWindow ?? null,
  };
}
